"""Real servers owned by the tests: redis-server processes, uvicorn apps in threads, workers.

Each server binds a free loopback port chosen here, so a test never touches a server it did not
start (not even the one on 6379).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import uvicorn

from worker.dev.devservers import RedisServer, free_port, redis_binary, wait_until

__all__ = [
    "RedisServer",
    "ThreadedUvicorn",
    "WorkerProcess",
    "free_port",
    "redis_binary",
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
