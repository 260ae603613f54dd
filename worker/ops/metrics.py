"""Prometheus metrics: counters kept by every worker process, gauges read from Redis at scrape.

Worker processes write their counters to files in `PROMETHEUS_MULTIPROC_DIR` (prometheus-client
multiprocess mode); the supervising `subaccount-worker worker` process serves one coherent view
of all of them plus the queue gauges. The directory is per run and emptied at start, so counters
of an earlier run never leak into this one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from handlers.outcomes import Outcome
from worker import keys
from worker.errors import BrokerUnavailable
from worker.ops.dead_letters import DeadLetters
from worker.ops.queue_age import ready_since_ms
from worker.pipeline.circuit import CircuitPolicy
from worker.pipeline.circuit_store import CircuitStore
from worker.pipeline.keyspace import Keyspace
from worker.pipeline.results import AttemptInfo

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

EVENTS = Counter("saw_events_total", "Events finished, by outcome", ["outcome", "event_type"])
API_CALLS = Counter(
    "saw_api_calls_total", "Subaccount API calls, by result", ["operation", "result"]
)
API_SECONDS = Histogram(
    "saw_api_call_seconds",
    "Subaccount API call latency",
    ["operation"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# From the door (first publish) and from the event's business time to its outcome being recorded;
# buckets reach a day, as a replay or a backfill finishes events that old.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)
EVENT_LATENCY = Histogram(
    "saw_event_latency_seconds",
    "From the door (since=door) or the event's time (since=event_time) to its outcome",
    ["since", "outcome"],
    buckets=LATENCY_BUCKETS_S,
)
WORKER_UP = Gauge("saw_worker_up", "1 per live worker process", multiprocess_mode="liveall")
CIRCUIT = Counter(
    "saw_api_circuit_total",
    "API circuit breaker actions, by operation: opened, closed, probe (a call let through "
    "while open), held (an event sent back to wait without spending an attempt)",
    ["operation", "action"],
)


def record_outcome(outcome: str, event_type: str) -> None:
    EVENTS.labels(outcome=outcome, event_type=event_type).inc()


def observe_call(operation: str, result: str, seconds: float) -> None:
    """The API client's observer: one count and one latency sample per call."""
    API_CALLS.labels(operation=operation, result=result).inc()
    API_SECONDS.labels(operation=operation).observe(seconds)


def observe_finish(event: dict[str, Any], info: AttemptInfo, outcome: Outcome) -> None:
    """The broker's finish observer: how long the event took from the door and from its time."""
    now = time.time()
    if info.published_ms:
        EVENT_LATENCY.labels(since="door", outcome=outcome).observe(now - info.published_ms / 1000)
    event_time = _event_time(event)
    if event_time is not None:
        EVENT_LATENCY.labels(since="event_time", outcome=outcome).observe(
            max(0.0, now - event_time)
        )


def _event_time(event: dict[str, Any]) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(event.get("time"))).timestamp()
    except ValueError:
        return None


def record_circuit(operation: str, action: str) -> None:
    """The API circuit's observer (worker/pipeline/circuit_gate.py)."""
    CIRCUIT.labels(operation=operation, action=action).inc()


def mark_worker_up() -> None:
    WORKER_UP.set(1)


def prepare_run_dir(base: str | None = None) -> str:
    """Create (or empty) the per-run multiprocess directory and return its path."""
    path = Path(base) if base else Path(f"/tmp/subaccount-worker-metrics-{os.getpid()}")  # noqa: S108
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return str(path)


class QueueCollector:
    """Gauges computed from Redis at scrape time: queue depth, oldest message, dead letters."""

    def __init__(
        self, client: redis.Redis, prefix: str, queue_name: str, keyspace: Keyspace
    ) -> None:
        self._redis = client
        self._circuits = CircuitStore(client, prefix, CircuitPolicy())
        self._dead = DeadLetters(client, prefix)
        self._queue = keys.dramatiq_queue(prefix, queue_name)
        self._keyspace = keyspace  # the queue is in the broker's database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            depth, delayed, oldest, dead = self._read()
        except redis.RedisError:
            return  # a scrape during an outage shows no queue gauges rather than failing
        yield GaugeMetricFamily("saw_queue_depth", "Messages ready in the queue", value=depth)
        yield GaugeMetricFamily("saw_queue_delayed", "Messages waiting for a retry", value=delayed)
        yield GaugeMetricFamily(
            "saw_queue_oldest_age_seconds",
            "Time the oldest ready message has waited since it became ready",
            value=oldest,
        )
        family = GaugeMetricFamily("saw_dead_letters", "Dead letters by reason", labels=["reason"])
        for reason, count in sorted(dead.items()):
            family.add_metric([reason], count)
        yield family
        yield from self._circuit_gauges()

    def _circuit_gauges(self) -> Iterator[GaugeMetricFamily]:
        """The API circuit breaker's shared state: how many circuits are open, which, since."""
        try:
            circuits = self._circuits.read_open().open
        except BrokerUnavailable:
            return
        yield GaugeMetricFamily(
            "saw_api_circuits_open", "API operations whose circuit is open", value=len(circuits)
        )
        is_open = GaugeMetricFamily(
            "saw_api_circuit_open", "1 while the operation's circuit is open", labels=["operation"]
        )
        since = GaugeMetricFamily(
            "saw_api_unavailable_since_seconds",
            "Unix time of the first failure of the open circuit's outage",
            labels=["operation"],
        )
        for circuit in circuits:
            is_open.add_metric([circuit.operation], 1)
            since.add_metric([circuit.operation], circuit.since_ms / 1000)
        yield is_open
        yield since

    def _read(self) -> tuple[int, int, float, dict[str, int]]:
        def reads(pipe: Any) -> None:
            pipe.llen(self._queue)
            pipe.llen(f"{self._queue}.DQ")
            pipe.lindex(self._queue, 0)

        depth, delayed, first = self._keyspace.read(self._redis, reads)
        return depth, delayed, self._age_of(first), self._dead.counts_by_reason()

    def _age_of(self, message_id: bytes | None) -> float:
        if not message_id:
            return 0.0
        (raw,) = self._keyspace.read(
            self._redis, lambda p: p.hget(f"{self._queue}.msgs", message_id)
        )
        if not raw:
            return 0.0
        ready_ms = ready_since_ms(json.loads(raw))
        return max(0.0, time.time() - ready_ms / 1000) if ready_ms else 0.0


def merged_registry(run_dir: str, collector: QueueCollector) -> CollectorRegistry:
    """Every worker process's counters plus the queue gauges (served by the supervisor)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=run_dir)  # type: ignore[no-untyped-call]
    registry.register(_ReapDead(run_dir))
    registry.register(collector)
    return registry


class _ReapDead:
    """Before each scrape, drop the live gauges of worker processes that have exited."""

    def __init__(self, run_dir: str) -> None:
        self._dir = Path(run_dir)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for path in self._dir.glob("gauge_live*_*.db"):
            pid = int(path.stem.rsplit("_", 1)[1])
            if not process_alive(pid):
                mark_process_dead(pid, str(self._dir))  # type: ignore[no-untyped-call]
        return iter(())


def process_alive(pid: int) -> bool:
    """Whether a process of this pid exists (signal 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
