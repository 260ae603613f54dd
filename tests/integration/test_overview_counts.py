"""The overview tells the truth: outcomes counted per minute (a busy hour is not drawn idle),
the oldest *ready* message's age (a wait for onboarding is not a stuck queue), and what to do
next for each dead-letter reason."""

from __future__ import annotations

import json
import time

import redis

from handlers.outcomes import Reason
from tests.integration.ops_support import cli_json, make_dead_letters
from worker import keys
from worker.ops.advice import NEXT_STEP, next_step
from worker.ops.outcome_counts import OutcomeCounter, read_counts
from worker.ops.queue_age import ready_since_ms
from worker.ops.status import read_status
from worker.pipeline.keyspace import Keyspace

QUEUE = "subaccount-events"
SHARED = Keyspace(0, 0)  # the queue beside the records: this test writes both in DB 0


def test_a_busy_hour_is_counted_whole(redis_client: redis.Redis) -> None:
    """5,000 outcomes in the hour (the old chart read only the newest 2,000): all counted, by
    kind, in the last hour and the last day; `status` reads the same counts."""
    counter = OutcomeCounter(redis_client, "saw", flush_s=3600)  # flushed by hand below
    for n in range(5000):
        counter.observe("applied" if n % 5 else "duplicate", "invoice.paid")
    counter.flush()
    counts = read_counts(redis_client, "saw")
    assert counts.last_hour == {"applied": 4000, "duplicate": 1000}
    assert counts.last_day == counts.last_hour
    assert sum(counts.per_minute()) == 5000
    assert len(counts.per_minute()) == 60 and len(counts.per_hour()) == 24  # noqa: PT018
    status = read_status(redis_client, "saw", QUEUE, 30_000, keyspace=SHARED)
    assert status.outcomes_last_hour == {"applied": 4000, "duplicate": 1000}


def test_counts_kept_while_redis_is_away_are_written_later(redis_url: str) -> None:
    """A flush that fails keeps its tally for the next one: nothing counted is lost."""
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    counter = OutcomeCounter(down, "saw", flush_s=3600)
    counter.observe("applied", "invoice.paid")
    counter.flush()  # fails: Redis unreachable
    up = redis.Redis.from_url(redis_url)
    counter._redis = up  # the same process, Redis back
    counter.flush()
    assert read_counts(up, "saw").last_hour == {"applied": 1}
    up.close()


def test_the_oldest_age_counts_from_when_a_message_became_ready(
    redis_client: redis.Redis,
) -> None:
    """An event published 10 minutes ago that waited for its client's onboarding until 2 s ago
    is 2 s old in the queue, not 10 minutes (which paged QueueStalled falsely)."""
    now = int(time.time() * 1000)
    message = {"message_id": "m1", "message_timestamp": now - 600_000,
               "options": {"eta": now - 2_000}}  # fmt: skip
    assert ready_since_ms(message) == now - 2_000
    assert ready_since_ms({"message_timestamp": now - 5}) == now - 5
    queue = keys.dramatiq_queue("saw", QUEUE)
    redis_client.hset(f"{queue}.msgs", "m1", json.dumps(message))
    redis_client.rpush(queue, "m1")
    age = read_status(
        redis_client, "saw", QUEUE, 30_000, keyspace=SHARED, now_ms=now
    ).oldest_queued_age_s
    assert age == 2.0


def test_every_reason_has_a_next_step_shown_by_summary(
    redis_url: str, redis_client: redis.Redis
) -> None:
    assert set(NEXT_STEP) == {reason.value for reason in Reason}
    make_dead_letters(redis_client, 2)
    summary = cli_json(redis_url, "dead-letters", "summary")
    assert summary["next_steps"] == {"retries_exhausted": next_step("retries_exhausted")}


def test_status_reads_at_80_columns(redis_url: str, redis_client: redis.Redis) -> None:
    """`status` in an 80-column terminal: no line wider, each figure beside its value."""
    import os
    import subprocess
    import sys

    make_dead_letters(redis_client, 3)
    env = {**os.environ, "SUBACCOUNT_WORKER_REDIS_URL": redis_url, "COLUMNS": "80"}
    done = subprocess.run([sys.executable, "-m", "worker.cli", "status"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    (dead,) = [line for line in lines if "│ dead letters " in line]
    assert dead.split("│")[2].strip() == "3"


def test_api_calls_are_counted_and_a_failing_api_is_told(redis_client: redis.Redis) -> None:
    """20 calls, 15 of them 503s or timeouts, 2 an event's own 404: the error rate counts only
    the API's failures (15 of 20), with the mean latency."""
    from worker.ops.outcome_counts import read_api_calls

    counter = OutcomeCounter(redis_client, "saw", flush_s=3600)
    for n in range(20):
        result = "Transient" if n < 15 else ("NotFound" if n < 17 else "ok")
        counter.observe_call("add_credits", result, 0.1)
    counter.flush()
    calls = read_api_calls(redis_client, "saw")
    assert (calls.calls, calls.failed) == (20, 15)
    assert calls.error_rate == 0.75
    assert calls.mean_ms == 100


def test_the_views_read_the_circuit_and_warn_while_it_is_open(redis_client: redis.Redis) -> None:
    """The workers' shared circuit opened by failures of several clients: the views read it
    as open with its start, and a replay's dry run gets a warning; closed, no warning."""
    from worker.ops import api_health as hook
    from worker.pipeline.circuit import CircuitPolicy
    from worker.pipeline.circuit_store import CircuitStore

    assert hook.circuit_open(redis_client, "saw") is None
    store = CircuitStore(redis_client, "saw", CircuitPolicy(failure_threshold=2, min_clients=2))
    assert store.failed("add_credits", "c0", "503", True, 0).is_open is False
    assert store.failed("add_credits", "c1", "503", True, 0).is_open
    health = hook.api_health(redis_client, "saw")
    assert health is not None
    assert health["state"] == "open"
    assert health["since"] == health["unavailable_since"] is not None
    warning = hook.circuit_open(redis_client, "saw")
    assert warning is not None
    assert f"since {health['since']}" in warning
    assert store.close("add_credits")
    assert hook.circuit_open(redis_client, "saw") is None
