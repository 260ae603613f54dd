"""The state of the queue and the worker, read from Redis alone (so it answers with every worker
down): queued, delayed, in flight, workers alive, dead letters, recent outcomes (the per-minute
counts of `worker.ops.outcome_counts`), running jobs. The oldest queued age counts from when the
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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_status(
    client: redis.Redis,
    prefix: str,
    queue_name: str,
    heartbeat_timeout_ms: int,
    *,
    now_ms: int | None = None,
) -> Status:
    """The status as of now, in a few round trips."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    namespace = keys.dramatiq_namespace(prefix)
    queue = keys.dramatiq_queue(prefix, queue_name)
    delay_queue = f"{queue}.DQ"
    beats: Any = client.zrange(f"{namespace}:__heartbeats__", 0, -1, withscores=True)
    workers = [(_text(worker), int(score)) for worker, score in beats]
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue)
    pipe.llen(delay_queue)
    pipe.lindex(queue, 0)
    for worker, _ in workers:
        pipe.scard(f"{namespace}:__acks__.{worker}.{queue_name}")
        pipe.scard(f"{namespace}:__acks__.{worker}.{queue_name}.DQ")
    pipe.zrange(keys.dead_letter_index(prefix), 0, 0, withscores=True)
    replies = pipe.execute()
    queued, delayed_listed, oldest_id = replies[0], replies[1], replies[2]
    acks = replies[3:-1]
    oldest_dead = replies[-1]
    alive = sum(1 for _, beat in workers if now - beat < heartbeat_timeout_ms)
    dead = DeadLetters(client, prefix).counts_by_reason()
    return Status(
        queued=int(queued),
        delayed=int(delayed_listed) + sum(int(n) for n in acks[1::2]),
        in_flight=sum(int(n) for n in acks[0::2]),
        workers=alive,
        workers_gone=len(workers) - alive,
        oldest_queued_age_s=_age_s(client, queue, oldest_id, now),
        dead_letters=dead,
        dead_letters_total=sum(dead.values()),
        oldest_dead_letter_at=rfc3339(int(oldest_dead[0][1])) if oldest_dead else None,
        outcomes_last_hour=read_counts(client, prefix, now).last_hour,
        jobs_running=[job.to_json() for job in running_jobs(client, prefix)],
        at=rfc3339(now),
    )


def _age_s(client: redis.Redis, queue: str, message_id: Any, now_ms: int) -> float | None:
    if message_id is None:
        return None
    raw: Any = client.hget(f"{queue}.msgs", message_id)
    if raw is None:
        return None
    try:
        stamp = ready_since_ms(json.loads(raw))
    except (ValueError, AttributeError, TypeError):
        return None
    return round(max(0, now_ms - stamp) / 1000, 3) if stamp else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
