"""Redis locked down: one ACL user per role (deploy/redis/users.acl.template, rendered by
deploy/redis/render-acl.sh) on a private redis-server, over plain TCP and over TLS.

Without the password, or with a wrong one, worker and ingress refuse to start with one line
(exit 2). Each role works end to end through its own user: the ingress (saw-ingress) enqueues,
the worker (saw-worker) processes and runs Dramatiq's maintenance, the operator CLI
(saw-operator) sends and replays and its read-only commands read through saw-reader, the monitor
(saw-monitor) scans and queues a notification, the console serves a viewer's pages through
saw-reader and replays through saw-console, KEDA reads the queue length; and Redis denied none
of them anything. The attack matrix is tests/integration/test_acl_matrix.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import redis

from handlers import examples as f
from handlers import username_for
from tests.acl_support import USERS, AclRedis, denied
from tests.conftest import TEST_API_KEY
from tests.console.support import SECRET, TOKENS_SETTING, login
from tests.credits_support import NOTIFY_SECRET, webhook_receiver
from tests.ingress_support import TOKEN, post_structured
from tests.pipeline_support import wait_for_outcomes
from tests.servers import ThreadedUvicorn, WorkerProcess, free_port, wait_until
from worker.console import create_app
from worker.console.services import Filters, Services
from worker.credits.monitor import build_monitor
from worker.credits.notify import delivery_worker
from worker.runtime import redis_client
from worker.sandbox import SandboxAdmin
from worker.settings import load_settings

OUR_USERS = {user for user in USERS if user.startswith("saw-")} | {"keda"}
# A read-only user that finds the operators' dead-letter index behind cannot bring it up to date:
# Redis refuses those writes and the read scans the dead letters instead (worker/ops/index.py).
# Nor can it track a replay job's events (worker/ops/job_records.py: shown as last tracked).
READER_INDEX_CATCH_UP = {
    f"saw-reader command: {c}" for c in ("hset", "sadd", "zadd", "set", "evalsha")
}


@pytest.fixture(scope="module", params=["redis", "rediss"])
def acl_redis(request: pytest.FixtureRequest) -> Iterator[AclRedis]:
    server = AclRedis(tls=request.param == "rediss").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[AclRedis]:
    """The same over TLS alone, for the end-to-end run (once: it is the longest)."""
    server = AclRedis(tls=True).start()
    yield server
    server.stop()


def _admin(server: AclRedis) -> Iterator[redis.Redis]:
    """The operators' `admin` user, for the test's own setup and observations."""
    client = server.client("admin")
    client.flushall()
    client.acl_log_reset()
    yield client
    client.close()


@pytest.fixture
def admin(acl_redis: AclRedis) -> Iterator[redis.Redis]:
    yield from _admin(acl_redis)


@pytest.fixture
def tls_admin(tls_redis: AclRedis) -> Iterator[redis.Redis]:
    yield from _admin(tls_redis)


def _env(redis_url: str, sandbox_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "SUBACCOUNT_WORKER_REDIS_URL": redis_url,
        "SUBACCOUNT_WORKER_API_BASE_URL": f"{sandbox_url}/v6",
        "SUBACCOUNT_WORKER_API_KEY": TEST_API_KEY,
        "SUBACCOUNT_WORKER_INGRESS_TOKENS": TOKEN,
        "SUBACCOUNT_WORKER_HEARTBEAT_TIMEOUT_MS": "1000",
        "SUBACCOUNT_WORKER_MAINTENANCE_CHANCE": "1000000",  # Dramatiq's KEYS on every fetch
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
    ("user", "password"), [("", ""), ("saw-worker", "wrong-pw"), ("nobody", "wrong-pw")]
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
    assert acl_redis.client("admin", db=1).zcard("saw:dramatiq:__heartbeats__") == 0


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


def test_each_role_works_end_to_end_through_its_own_user(
    tls_redis: AclRedis,
    tls_admin: redis.Redis,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
) -> None:
    acl_redis, admin = tls_redis, tls_admin
    url = acl_redis.url
    metrics_port = free_port()
    worker_env = _env(url("saw-worker"), sandbox_server.url)
    worker_env["SUBACCOUNT_WORKER_METRICS_PORT"] = str(metrics_port)
    ingress, ingress_url = _ingress(_env(url("saw-ingress"), sandbox_server.url))
    worker = WorkerProcess(worker_env, "--processes", "1", "--threads", "2").start()
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
        _operator_cli(admin, url("saw-operator"), url("saw-reader"), sandbox_server.url, paid["id"])
        _monitor(url("saw-monitor"), sandbox_server.url, acl_redis)
        _console(acl_redis, admin, sandbox_server.url)
        keda = acl_redis.client("keda", db=1)
        assert keda.llen("saw:dramatiq:subaccount-events") >= 0
        keda.close()

        scrape = f"http://127.0.0.1:{metrics_port}"
        wait_until(
            lambda: "saw_dead_letters{" in httpx.get(f"{scrape}/metrics").text,
            what="the worker's queue and dead-letter gauges read through saw-worker",
        )
        health = httpx.get(f"{scrape}/healthz")
        assert health.status_code == 200, health.text
        assert health.json()["redis"] == "ok"
    finally:
        worker.stop()
        ingress.terminate()
        ingress.wait(timeout=20)
        print("ACL denials:", denied(admin, OUR_USERS))  # shown when a step above fails
    assert set(denied(admin, OUR_USERS)) <= READER_INDEX_CATCH_UP


def _operator_cli(
    admin: redis.Redis, operator_url: str, reader_url: str, sandbox_url: str, event_id: str
) -> None:
    """The operator's `send` and replay through saw-operator; its read-only commands through
    saw-reader."""
    env = _env(operator_url, sandbox_url, SUBACCOUNT_WORKER_REDIS_READ_URL=reader_url)
    sent = f.onboarded("acl-sent")
    argv = [sys.executable, "-m", "worker.cli", "send", "-"]
    done = subprocess.run(argv, env=env, input=json.dumps(sent), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert wait_for_outcomes(admin, [sent["id"]], timeout_s=40)[sent["id"]]["outcome"] == "applied"
    listed = _cli(env, "dead-letters", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (letter,) = json.loads(listed.stdout)
    assert letter["subject"] == "nobody-acl"
    # A job, its lock, the audit record (the event is still unknown: it comes back dead).
    replay = _cli(env, "dead-letters", "replay", letter["id"], "--yes", "--json")
    assert replay.returncode == 0, replay.stderr
    for command in (
        ("status", "--json"),
        ("clients", "show", "acl", "--json"),
        ("events", "show", event_id, "--json"),
        ("dead-letters", "summary", "--json"),
        ("dead-letters", "list", "--client", "nobody-acl", "--json"),
        ("audit", "list", "--json"),
        ("credits", "list", "--json"),
    ):
        result = _cli(env, *command)
        assert result.returncode == 0, (command, result.stderr)
        json.loads(result.stdout)  # a JSON answer, not an error


def _monitor(monitor_url: str, sandbox_url: str, acl_redis: AclRedis) -> None:
    """Through saw-monitor: a tick (the lease, client states, snapshots, a low-credit alert, its
    notification queued in the broker's database), then its own Dramatiq consumer (fetch,
    maintenance, ack) delivering the notification to a webhook."""
    with webhook_receiver(NOTIFY_SECRET) as (hook_url, receiver):
        settings = load_settings(
            redis_url=monitor_url,
            api_base_url=f"{sandbox_url}/v6",
            api_key=TEST_API_KEY,
            notify_url=hook_url,
            notify_allow_http_loopback=True,
            notify_secret=NOTIFY_SECRET,
            credits_warn_balance=1000,
            maintenance_chance=1_000_000,
        )
        client = redis_client(settings)
        try:
            report = build_monitor(settings, client).tick()
            assert report is not None
            assert report.scanned >= 1
            deliveries = delivery_worker(settings, client)
            try:
                wait_until(lambda: receiver.deliveries, what="the notification delivered")
            finally:
                deliveries.stop()
        finally:
            client.close()
    assert receiver.deliveries[0]["type"] == "subaccount.credits_low"


def _console(acl_redis: AclRedis, admin: redis.Redis, sandbox_url: str) -> None:
    """A viewer's pages through saw-reader (the console's own app under uvicorn); an operator's
    replay through saw-console."""
    settings = load_settings(
        redis_url=acl_redis.url("saw-console"),
        redis_read_url=acl_redis.url("saw-reader"),
        api_base_url=f"{sandbox_url}/v6",
        console_tokens=TOKENS_SETTING,
        console_secret=SECRET,
    )
    app = create_app(settings)
    server = ThreadedUvicorn(app).start()
    try:
        with httpx.Client(base_url=server.url) as http:
            login(http, "viewer")  # and reads /dead-letters
            for page in ("/", "/dead-letters?client=nobody-acl", "/clients/acl", "/audit"):
                assert http.get(page).status_code == 200, page
        users = {c["user"] for c in admin.client_list() if c.get("user", "").startswith("saw-")}
        assert "saw-reader" in users  # the viewer's reads
        operator: Services = app.state.services
        plan = operator.kept_plan(
            operator.keep_plan(operator.plan("replay", None, Filters(), None))
        )
        job = operator.start_job(plan, "alice")
        wait_until(lambda: not operator.job(job.job.id).running, what="the console's replay job")
        assert operator.job(job.job.id).job.done == 1
    finally:
        server.stop()
        app.state.services.close()
        app.state.viewer_services.close()
