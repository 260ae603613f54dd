"""A private redis-server loaded with the rendered ACL file of deploy/redis (one user per role).

`AclRedis(tls).start()` renders users.acl.template with the passwords below through
deploy/redis/render-acl.sh (for the server's version) and serves it on a free loopback port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import redis

from tests.servers import free_port, redis_binary, wait_until

ROOT = Path(__file__).resolve().parents[1]
# user → (render-acl.sh's variable, the test's password)
USERS = {
    "saw-worker": ("WORKER_REDIS_PASSWORD", "worker-pw-3a1"),
    "saw-ingress": ("INGRESS_REDIS_PASSWORD", "ingress-pw-7c2"),
    "saw-monitor": ("MONITOR_REDIS_PASSWORD", "monitor-pw-9d4"),
    "saw-console": ("CONSOLE_REDIS_PASSWORD", "console-pw-1e5"),
    "saw-operator": ("OPERATOR_REDIS_PASSWORD", "operator-pw-6f8"),
    "saw-reader": ("READER_REDIS_PASSWORD", "reader-pw-2b9"),
    "keda": ("KEDA_REDIS_PASSWORD", "keda-pw-1"),
    "admin": ("ADMIN_REDIS_PASSWORD", "admin-pw-77ab"),
    "healthcheck": ("", "x"),  # no password: any is accepted
}


def server_version() -> str:
    """`7.0.15` of the redis-server the tests run."""
    out = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True).stdout
    return out.split("v=", 1)[1].split()[0]


def render_acl() -> bytes:
    """deploy/redis/render-acl.sh's output for the test passwords and the test server."""
    env = {**os.environ, "REDIS_VERSION": server_version()}
    env.update({var: password for var, password in USERS.values() if var})
    script = ROOT / "deploy" / "redis" / "render-acl.sh"
    return subprocess.run(["sh", str(script)], env=env, capture_output=True, check=True).stdout


class AclRedis:
    """A redis-server of our own that loads the rendered ACL file of deploy/redis."""

    def __init__(self, tls: bool = False) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="saw-redis-acl-"))
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, user: str = "", password: str | None = None, db: int = 0) -> str:
        """The URL of `user` (with its test password unless one is given)."""
        if password is None and user:
            password = USERS[user][1]
        auth = f"{user}:{password}@" if user or password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/{db}?ssl_ca_certs={self.dir}/tls.crt"
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def client(self, user: str, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.url(user, db=db))

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
        acl.write_bytes(render_acl())
        args = [redis_binary(), *self._listen_args(), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.dir), "--aclfile", str(acl)]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.Redis.from_url(self.url("healthcheck"), socket_connect_timeout=0.2)

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


def denied(admin: redis.Redis, users: set[str]) -> list[str]:
    """What Redis refused to `users`, but redis-py's CLIENT SETINFO at connect and the
    durability probe's CONFIG GET (the admin's; both cope with the refusal)."""
    return [
        f"{e.get('username')} {e.get('reason')}: {e.get('object')}"
        for e in admin.acl_log(count=1000)
        if e.get("username") in users and e.get("object") not in ("client|setinfo", "config|get")
    ]
