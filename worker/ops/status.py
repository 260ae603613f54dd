"""The state of the queue and the worker, read from Redis alone (so it answers with every worker
down): queued, delayed, in flight, workers alive, dead letters, recent outcomes (the per-minute
counts of `worker.ops.outcome_counts`), running jobs, and whether the API is available (the
circuit breaker's shared state, `api_health`). The oldest queued age counts from when the
message became ready (`worker.ops.queue_age`): a wait for onboarding is delayed, not stuck.

Dramatiq's Redis layout (`dramatiq/brokers/redis/dispatch.lua`), under our namespace `{p}:dramatiq`:
`{ns}:{queue}` list of message ids and `{ns}:{queue}.msgs` their bodies; `{ns}:{queue}.DQ` the
delayed messages (retries and waits); a worker fetching a message moves its id into its ack set
`{ns}:__acks__.{worker id}.{queue}` (delayed ones: `.{queue}.DQ`, held until their eta) until it
acknowledges it; `{ns}:__heartbeats__` scores each worker id by its last heartbeat (ms). So in
flight = the ack sets of the main queue; delayed = the delay list plus the delay ack sets.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from worker import keys
from worker.ops.dead_letters import DeadLetters
from worker.ops.filters import rfc3339
from worker.ops.job_records import running_jobs
from worker.ops.outcome_counts import read_counts
from worker.ops.queue_age import ready_since_ms
from worker.pipeline.circuit import CircuitPolicy
from worker.pipeline.circuit_store import CircuitStore
from worker.pipeline.keyspace import Keyspace


@dataclass(frozen=True)
class Status:
    """`status --json` (pinned fields: queued, delayed, in_flight, workers, oldest_queued_age_s,
    dead_letters)."""

    queued: int
    delayed: int
    in_flight: int
    workers: int  # alive: heartbeat within the timeout
    workers_gone: int  # heartbeat older than the timeout (their messages come back)
    oldest_queued_age_s: float | None
    dead_letters: dict[str, int]
    dead_letters_total: int
    oldest_dead_letter_at: str | None
    outcomes_last_hour: dict[str, int]
    jobs_running: list[dict[str, Any]] = field(default_factory=list)
    at: str | None = None
    api: dict[str, Any] = field(default_factory=dict)  # `ApiHealth.to_json()`

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ApiHealth:
    """The API circuit breaker's view of the API: unavailable since when, for which operations
    (events needing them wait without spending attempts), and the last outage that ended."""

    available: bool
    unavailable_since: str | None  # the earliest open circuit's first failure (RFC 3339)
    circuits: list[dict[str, Any]]  # one per open operation: since, next probe, probes, error
    last_outage: dict[str, Any] | None = None  # the most recently closed circuit

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def api_health(client: redis.Redis, prefix: str) -> ApiHealth:
    """Is the API available, as the workers' shared circuit breaker sees it (two round trips)?
    For `status`, the metrics and the console's overview."""
    store = CircuitStore(client, prefix, CircuitPolicy())
    circuits = store.read_open()
    rows: list[dict[str, Any]] = [
        {
            "operation": c.operation,
            "since": rfc3339(c.since_ms),
            "opened_at": rfc3339(c.opened_ms),
            "next_probe_in_s": round(max(0, c.probe_at_ms - circuits.now_ms) / 1000, 1),
            "failures": c.failures,
            "probes": c.probes,
            "last_error": c.last_error,
        }
        for c in sorted(circuits.open, key=lambda c: c.since_ms)
    ]
    last = max(store.last_outages().items(), key=lambda kv: int(kv[1].get("closed_ms", 0)),
               default=None)  # fmt: skip
    outage = None
    if last is not None:
        op, fields = last
        outage = {"operation": op, "since": rfc3339(int(fields.get("since_ms", 0))),
                  "closed_at": rfc3339(int(fields.get("closed_ms", 0))),
                  "probes": int(fields.get("probes", 0))}  # fmt: skip
    return ApiHealth(
        available=not rows,
        unavailable_since=rows[0]["since"] if rows else None,
        circuits=rows,
        last_outage=outage,
    )


def read_status(
    client: redis.Redis,
    prefix: str,
    queue_name: str,
    heartbeat_timeout_ms: int,
    *,
    keyspace: Keyspace,
    now_ms: int | None = None,
) -> Status:
    """The status as of now, in a few round trips (the queue's in `keyspace.broker_db`)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    namespace = keys.dramatiq_namespace(prefix)
    queue = keys.dramatiq_queue(prefix, queue_name)
    delay_queue = f"{queue}.DQ"
    (beats,) = keyspace.read(
        client, lambda p: p.zrange(f"{namespace}:__heartbeats__", 0, -1, withscores=True)
    )
    workers = [(_text(worker), int(score)) for worker, score in beats]

    def broker_reads(pipe: Any) -> None:
        pipe.llen(queue)
        pipe.llen(delay_queue)
        pipe.lindex(queue, 0)
        for worker, _ in workers:
            pipe.scard(f"{namespace}:__acks__.{worker}.{queue_name}")
            pipe.scard(f"{namespace}:__acks__.{worker}.{queue_name}.DQ")

    replies = keyspace.read(client, broker_reads)
    queued, delayed_listed, oldest_id = replies[0], replies[1], replies[2]
    acks = replies[3:]
    oldest_dead: Any = client.zrange(keys.dead_letter_index(prefix), 0, 0, withscores=True)
    alive = sum(1 for _, beat in workers if now - beat < heartbeat_timeout_ms)
    dead = DeadLetters(client, prefix).counts_by_reason()
    return Status(
        queued=int(queued),
        delayed=int(delayed_listed) + sum(int(n) for n in acks[1::2]),
        in_flight=sum(int(n) for n in acks[0::2]),
        workers=alive,
        workers_gone=len(workers) - alive,
        oldest_queued_age_s=_age_s(client, keyspace, queue, oldest_id, now),
        dead_letters=dead,
        dead_letters_total=sum(dead.values()),
        oldest_dead_letter_at=rfc3339(int(oldest_dead[0][1])) if oldest_dead else None,
        outcomes_last_hour=read_counts(client, prefix, now).last_hour,
        jobs_running=[job.to_json() for job in running_jobs(client, prefix)],
        at=rfc3339(now),
        api=api_health(client, prefix).to_json(),
    )


def _age_s(
    client: redis.Redis, keyspace: Keyspace, queue: str, message_id: Any, now_ms: int
) -> float | None:
    if message_id is None:
        return None
    (raw,) = keyspace.read(client, lambda p: p.hget(f"{queue}.msgs", message_id))
    if raw is None:
        return None
    try:
        stamp = ready_since_ms(json.loads(raw))
    except (ValueError, AttributeError, TypeError):
        return None
    return round(max(0, now_ms - stamp) / 1000, 3) if stamp else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
