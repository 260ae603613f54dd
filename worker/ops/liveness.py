"""Worker liveness: are the supervisor's Dramatiq processes alive and consuming?

Each worker process notes its Dramatiq broker id in the per-run directory (`record_broker`). The
supervisor's `/healthz` (`LivenessCheck`) then reads, for every live process, the age of its
Dramatiq heartbeat in Redis (refreshed by every fetch, ack and enqueue of its consumers) and how
many messages it holds (its acks sets). A process is judged stuck only when its heartbeat is
older than the heartbeat timeout *and* it holds no message: a process whose threads are all busy
holds messages, so a slow API call or the rate limiter never fails the probe. A Redis outage does
not fail it either (a restart would not help; the alerts report it). The supervisor itself fails
the probe when it has had no Dramatiq process running for longer than its restart backoff.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from worker import keys
from worker.ops.metrics import MULTIPROC_ENV, process_alive
from worker.pipeline.keyspace import Keyspace
from worker.settings import Settings

BROKER_FILE_PREFIX = "broker-"
# How long the supervisor may have no Dramatiq process before it is judged wedged: its restart
# backoff is at most 10 s, and Dramatiq takes a few seconds to import and fork.
NO_CHILD_GRACE_S = 60.0


def record_broker(broker_id: str, run_dir: str | None = None) -> None:
    """In a worker process: note this process's Dramatiq broker id for the supervisor."""
    directory = run_dir or os.environ.get(MULTIPROC_ENV)
    if directory:
        Path(directory, f"{BROKER_FILE_PREFIX}{os.getpid()}").write_text(broker_id)


def forget_brokers(run_dir: str) -> None:
    """In the supervisor, before it starts Dramatiq: drop the notes of earlier processes, whose
    pids a new process may reuse (the directory can outlive a container restart)."""
    for path in Path(run_dir).glob(f"{BROKER_FILE_PREFIX}*"):
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class ProcessHealth:
    pid: int
    heartbeat_age_s: float | None  # since boot if none yet; None: Redis unreadable
    holding: int | None  # messages fetched and not yet acknowledged
    consuming: bool


@dataclass(frozen=True)
class Health:
    ok: bool
    reason: str
    dramatiq_running: bool
    redis: str  # "ok" or "unreachable"
    processes: list[ProcessHealth] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class ChildState:
    """What the supervisor's loop tells the probe: is a Dramatiq process running, since when not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = time.monotonic()

    def running(self) -> None:
        with self._lock:
            self._down_since = None

    def down(self) -> None:
        with self._lock:
            self._down_since = time.monotonic()

    def down_for_s(self) -> float | None:
        with self._lock:
            return None if self._down_since is None else time.monotonic() - self._down_since


class LivenessCheck:
    """The supervisor's `/healthz`: callable, returns a `Health`."""

    def __init__(
        self, client: redis.Redis, settings: Settings, run_dir: str, child: ChildState
    ) -> None:
        self._redis = client
        self._namespace = keys.dramatiq_namespace(settings.key_prefix)
        self._keyspace = Keyspace.of(settings)  # the heartbeats are in the broker's database
        self._queues = (settings.queue_name, f"{settings.queue_name}.DQ")
        self._stale_s = settings.heartbeat_timeout_ms / 1000
        self._dir = Path(run_dir)
        self._child = child

    def __call__(self) -> Health:
        down_for = self._child.down_for_s()
        if down_for is not None and down_for > NO_CHILD_GRACE_S:
            reason = f"no Dramatiq process has run for {down_for:.0f} s"
            return Health(ok=False, reason=reason, dramatiq_running=False, redis="unknown")
        brokers = self._live_brokers()
        try:
            processes = self._read(brokers)
        except redis.RedisError:
            unread = [ProcessHealth(pid, None, None, True) for pid in brokers]
            return Health(True, "redis unreachable", down_for is None, "unreachable", unread)
        stuck = [p.pid for p in processes if not p.consuming]
        reason = f"not consuming: pid {', '.join(map(str, stuck))}" if stuck else "ok"
        return Health(not stuck, reason, down_for is None, "ok", processes)

    def _live_brokers(self) -> dict[int, tuple[str, float]]:
        """pid -> (broker id, when it was recorded) of every worker process still alive."""
        found: dict[int, tuple[str, float]] = {}
        for path in self._dir.glob(f"{BROKER_FILE_PREFIX}*"):
            pid = int(path.name.removeprefix(BROKER_FILE_PREFIX))
            if process_alive(pid):
                found[pid] = (path.read_text().strip(), path.stat().st_mtime)
            else:
                path.unlink(missing_ok=True)
        return found

    def _read(self, brokers: dict[int, tuple[str, float]]) -> list[ProcessHealth]:
        def reads(pipe: Any) -> None:
            for broker_id, _ in brokers.values():
                pipe.zscore(f"{self._namespace}:__heartbeats__", broker_id)
                for queue in self._queues:
                    pipe.scard(f"{self._namespace}:__acks__.{broker_id}.{queue}")

        replies = iter(self._keyspace.read(self._redis, reads))
        now = time.time()
        result = []
        for pid, (_, recorded_at) in brokers.items():
            beat = next(replies)
            holding = sum(int(next(replies)) for _ in self._queues)
            # No heartbeat yet: count from when the process booted.
            age = now - (recorded_at if beat is None else float(beat) / 1000)
            consuming = age <= self._stale_s or holding > 0
            result.append(ProcessHealth(pid, round(max(0.0, age), 3), holding, consuming))
        return result


def serve(host: str, port: int, registry: CollectorRegistry, check: LivenessCheck) -> None:
    """Serve /metrics (the registry) and /healthz (the check) on `port`, in a daemon thread.

    The socket is bound here, before returning: a taken port raises OSError at once.
    """
    server = ThreadingHTTPServer((host, port), _handler(registry, check))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()


def _handler(registry: CollectorRegistry, check: LivenessCheck) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/healthz":
                health = check()
                body = json.dumps(health.as_dict()).encode()
                self._answer(200 if health.ok else 503, "application/json", body)
            else:
                self._answer(404, "text/plain", b"not found\n")

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes and probes are not logged (one every few seconds)."""

    return Handler
