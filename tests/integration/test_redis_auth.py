"""Redis locked down: the shipped ACL file (deploy/redis/users.acl.template, rendered by
deploy/redis/render-acl.sh) on a private redis-server, with the real worker and ingress commands,
over plain TCP and over TLS (rediss:// with the CA in the URL's ssl_ca_certs).

Without the password, or with a wrong one, both commands refuse to start with one line (exit 2).
With it, events go from the ingress through the worker to the sandbox, the operator commands and
the worker's metrics and /healthz work, and Redis logged no command the ACL denied.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from handlers import examples as f
from handlers import username_for
from tests.conftest import TEST_API_KEY
from tests.ingress_support import TOKEN, post_structured
from tests.pipeline_support import wait_for_outcomes
from tests.servers import ThreadedUvicorn, WorkerProcess, free_port, redis_binary, wait_until
from worker.sandbox import SandboxAdmin

ROOT = Path(__file__).resolve().parents[2]
APP_PASSWORD = "app-pw-4f1e9c"
ADMIN_PASSWORD = "admin-pw-77ab"


class AclRedis:
    """A redis-server of our own that loads the rendered ACL file of deploy/redis."""

    def __init__(self, tls: bool) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="saw-redis-acl-"))
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, user: str = "", password: str = "") -> str:
        auth = f"{user}:{password}@" if user or password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.dir}/tls.crt"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _listen_args(self) -> list[str]:
        if not self.tls:
            return ["--port", str(self.port)]
        cert, key = self.dir / "tls.crt", self.dir / "tls.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            capture_output=True, check=True,
        )  # fmt: skip
        return ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                "--tls-auth-clients", "no"]  # fmt: skip

    def start(self) -> AclRedis:
        acl = self.dir / "users.acl"
        env = {
            **os.environ,
            "SAW_REDIS_PASSWORD": APP_PASSWORD,
            "KEDA_REDIS_PASSWORD": "keda-pw-1",
            "ADMIN_REDIS_PASSWORD": ADMIN_PASSWORD,
        }
        script = ROOT / "deploy" / "redis" / "render-acl.sh"
        rendered = subprocess.run(["sh", str(script)], env=env, capture_output=True, check=True)
        acl.write_bytes(rendered.stdout)
        args = [redis_binary(), *self._listen_args(), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.dir), "--aclfile", str(acl)]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.Redis.from_url(self.url("healthcheck", "x"), socket_connect_timeout=0.2)

        def ready() -> bool:
            try:
                return bool(probe.ping())
            except redis.ConnectionError:
                return False

        wait_until(ready, what=f"redis-server with the ACL file on port {self.port}")
        probe.close()
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module", params=["redis", "rediss"])
def acl_redis(request: pytest.FixtureRequest) -> Iterator[AclRedis]:
    server = AclRedis(tls=request.param == "rediss").start()
    yield server
    server.stop()


@pytest.fixture
def admin(acl_redis: AclRedis) -> Iterator[redis.Redis]:
    """The operators' `admin` user, for the test's own setup and observations."""
    client = redis.Redis.from_url(acl_redis.url("admin", ADMIN_PASSWORD))
    client.flushall()
    client.acl_log_reset()
    yield client
    client.close()


def _env(redis_url: str, sandbox_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "SUBACCOUNT_WORKER_REDIS_URL": redis_url,
        "SUBACCOUNT_WORKER_API_BASE_URL": f"{sandbox_url}/v6",
        "SUBACCOUNT_WORKER_API_KEY": TEST_API_KEY,
        "SUBACCOUNT_WORKER_INGRESS_TOKENS": TOKEN,
        "SUBACCOUNT_WORKER_HEARTBEAT_TIMEOUT_MS": "1000",
        "SUBACCOUNT_WORKER_MAINTENANCE_CHANCE": "1000000",
        "SUBACCOUNT_WORKER_UNKNOWN_CLIENT_WAIT_S": "0",
        "SUBACCOUNT_WORKER_LOG_FORMAT": "json",
        "SUBACCOUNT_WORKER_LOG_LEVEL": "WARNING",
        **extra,
    }


def _cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "worker.cli", *args]
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _assert_refused(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "refused our credentials" in lines[0]
    assert "SUBACCOUNT_WORKER_REDIS_URL" in lines[0]
    assert "wrong-pw" not in lines[0]


@pytest.mark.parametrize(
    ("user", "password"), [("", ""), ("saw", "wrong-pw"), ("nobody", "wrong-pw")]
)
@pytest.mark.parametrize(
    "command", [("worker", "--processes", "1", "--threads", "1"), ("ingress", "--port", "0")]
)
def test_without_the_password_worker_and_ingress_refuse_to_start(
    acl_redis: AclRedis,
    admin: redis.Redis,
    sandbox_server: ThreadedUvicorn,
    user: str,
    password: str,
    command: tuple[str, ...],
) -> None:
    env = _env(acl_redis.url(user, password), sandbox_server.url)
    _assert_refused(_cli(env, *command))
    assert admin.zcard("saw:dramatiq:__heartbeats__") == 0  # no consumer started


def _ingress(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [sys.executable, "-m", "worker.cli", "ingress", "--port", str(port)]
    proc = subprocess.Popen(argv, env=env)

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout_s=30, what="the ingress ready on the locked-down Redis")
    return proc, f"http://127.0.0.1:{port}"


def _denied(admin: redis.Redis) -> list[str]:
    """Commands Redis refused to our application user (redis-py's CLIENT SETINFO aside)."""
    entries = admin.acl_log()
    return [
        f"{e.get('reason')}: {e.get('object')}"
        for e in entries
        if e.get("username") == "saw" and e.get("object") != "client|setinfo"
    ]


def test_with_the_password_everything_works_and_nothing_is_denied(
    acl_redis: AclRedis, admin: redis.Redis, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> None:
    metrics_port = free_port()
    env = _env(
        acl_redis.url("saw", APP_PASSWORD),
        sandbox_server.url,
        SUBACCOUNT_WORKER_METRICS_PORT=str(metrics_port),
    )
    ingress, ingress_url = _ingress(env)
    worker = WorkerProcess(env, "--processes", "1", "--threads", "2").start()
    try:
        onboard, paid = f.onboarded("acl"), f.invoice_paid("acl", "INV-ACL", 30)
        stranger = f.invoice_paid("nobody-acl", "INV-X", 5)  # never onboarded: dead-lettered
        with httpx.Client(base_url=ingress_url) as http:
            assert post_structured(http, onboard).status_code == 202
            wait_for_outcomes(admin, [onboard["id"]], timeout_s=40)
            for event in (paid, stranger):
                response = post_structured(http, event)
                assert response.status_code == 202, response.text
        found = wait_for_outcomes(admin, [paid["id"], stranger["id"]], timeout_s=40)
        assert found[paid["id"]]["outcome"] == "applied"
        assert found[stranger["id"]]["outcome"] == "dead_lettered"
        assert sandbox.state()["subaccounts"][username_for("acl")]["balance"] == 30

        listed = _cli(env, "dead-letters", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        (letter,) = json.loads(listed.stdout)
        assert letter["subject"] == "nobody-acl"
        # An operator's replay: a job, its lock, the audit record (the event is still unknown
        # to the worker, so it comes back as a dead letter).
        replay = _cli(env, "dead-letters", "replay", letter["id"], "--yes", "--json")
        assert replay.returncode == 0, replay.stderr
        # The operators' read-only views, each through the ACL user.
        for command in (
            ("status", "--json"),
            ("clients", "show", "acl", "--json"),
            ("events", "show", paid["id"], "--json"),
            ("dead-letters", "summary", "--json"),
            ("audit", "list", "--json"),
            ("credits", "list", "--json"),
        ):
            result = _cli(env, *command)
            assert result.returncode == 0, (command, result.stderr)
            json.loads(result.stdout)  # a JSON answer, not an error

        scrape = f"http://127.0.0.1:{metrics_port}"
        wait_until(
            lambda: "saw_dead_letters{" in httpx.get(f"{scrape}/metrics").text,
            what="the worker's queue and dead-letter gauges read through the ACL",
        )
        health = httpx.get(f"{scrape}/healthz")
        assert health.status_code == 200, health.text
        assert health.json()["redis"] == "ok"
    finally:
        worker.stop()
        ingress.terminate()
        ingress.wait(timeout=20)
    assert _denied(admin) == []


def test_the_acl_users_can_do_only_their_part(acl_redis: AclRedis, admin: redis.Redis) -> None:
    """What each user of the ACL file may do, and what it may not (a client without a password
    nothing; the app nothing outside its keys nor anything dangerous)."""
    clients = {
        user: redis.Redis.from_url(acl_redis.url(user, password))
        for user, password in [("healthcheck", "x"), ("keda", "keda-pw-1"), ("saw", APP_PASSWORD)]
    }
    anonymous = redis.Redis.from_url(acl_redis.url())
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        assert clients["healthcheck"].ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            clients["healthcheck"].get("saw:anything")
        assert clients["keda"].llen("saw:dramatiq:subaccount-events") == 0
        with pytest.raises(redis.exceptions.NoPermissionError):
            clients["keda"].hgetall("saw:dead")
        app = clients["saw"]
        app.set("saw:probe", "1")
        for forbidden in (
            lambda: app.get("other:key"),
            app.flushall,
            lambda: app.config_get("*"),
            lambda: app.acl_list(),
            lambda: app.client_list(),
            lambda: app.publish("saw:channel", "x"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                forbidden()
        assert admin.get("saw:probe") == b"1"
    finally:
        anonymous.close()
        for client in clients.values():
            client.close()
