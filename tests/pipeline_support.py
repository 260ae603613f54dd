"""Run the real pipeline in-process: a Dramatiq worker on test-owned Redis, the sandbox on HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import redis

from handlers import Context, decide, username_for
from handlers.events import Event, parse_event
from handlers.plan import AddCredits, Apply, ClientState, Lifecycle, Step, step_name
from worker import keys
from worker.ops.outcomes import decode_entry, read_outcomes
from worker.pipeline.attempts import AttemptStore, BeginStep, ClaimStatus
from worker.pipeline.ledger import StepRecord, StepState
from worker.runtime import Runtime, build_runtime
from worker.settings import Settings, load_settings

FAST = {
    "retry_min_backoff_ms": 20,
    "retry_max_backoff_ms": 200,
    "lock_busy_delay_ms": 20,
    "unknown_client_retry_ms": 30,
    "api_read_timeout_s": 2.0,
    # No in-doubt window: these tests' sandbox applies a call before answering or never, so an
    # unanswered call is judged at once; tests of the window (test_in_doubt.py) set one.
    "api_settle_s": 0.0,
}


def pipeline_settings(redis_url: str, api_url: str, api_key: str, **overrides: Any) -> Settings:
    """Settings pointing at test-owned servers, with retry timings short enough for tests."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "api_base_url": api_url,
        "api_key": api_key,
        "worker_threads": 4,
        # Today's retry path unless a test turns the API circuit breaker on (issue 22): the
        # outage tests of the dead-letter tools need their outages to end as dead letters.
        "circuit_enabled": False,
        **FAST,
    }
    values.update(overrides)
    return load_settings(**values)


@contextmanager
def running_pipeline(settings: Settings, threads: int = 4) -> Iterator[Runtime]:
    """A Runtime whose actor is consumed by an in-process Dramatiq worker until exit."""
    runtime = build_runtime(settings)
    worker = dramatiq.Worker(runtime.broker, worker_threads=threads, worker_timeout=50)
    worker.start()
    try:
        yield runtime
    finally:
        worker.stop()
        runtime.close()


def outcomes(client: redis.Redis, prefix: str = "saw") -> list[dict[str, Any]]:
    """Every outcome record in the stream, oldest first, nested values decoded."""
    return read_outcomes(client, prefix)


def wait_for_outcomes(
    client: redis.Redis,
    event_ids: Iterable[str],
    *,
    timeout_s: float = 20.0,
    prefix: str = "saw",
) -> dict[str, dict[str, Any]]:
    """Block on the outcome stream until every event id has a first outcome; return them."""
    wanted = set(event_ids)
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    last_id = "0-0"
    while wanted - set(found):
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            raise AssertionError(f"no outcome for {sorted(wanted - set(found))}; got {found}")
        reply = client.xread(
            {keys.outcomes(prefix): last_id}, block=min(remaining_ms, 1000), count=100
        )
        for _stream, entries in reply:
            for entry_id, fields in entries:
                last_id = entry_id
                record = decode_entry(fields)
                event_id = record.get("event_id", "")
                if event_id in wanted and event_id not in found:
                    found[event_id] = record
    return found


def leave_grant_in_progress(
    store: AttemptStore, event: dict[str, Any], evidence: dict[str, Any]
) -> str:
    """Leave what a worker killed mid-grant leaves: the grant claimed and marked in progress
    with the evidence read before it (its lease then expires; here it is given back at once).
    Returns the event's key."""
    token = "killed-worker"
    parsed = parse_event(event)
    grant = next(s for s in parsed_plan_steps(parsed) if isinstance(s, AddCredits))
    assert store.open(parsed.key, parsed.client_id, token).status == "locked"
    begin = BeginStep(
        event_key=parsed.key,
        client_id=parsed.client_id,
        token=token,
        step=step_name(grant),
        record=StepRecord(StepState.IN_PROGRESS, token, int(time.time() * 1000), evidence),
        business_key=grant.business_key,
        amount=grant.request.amount,
    )
    held, claim = store.begin_step(begin)
    assert held
    assert claim.status == ClaimStatus.CLAIMED
    store.release(parsed.key, parsed.client_id, token)
    return parsed.key


def parsed_plan_steps(event: Event) -> tuple[Step, ...]:
    """The steps the handlers plan for `event` of an onboarded client (grants only need the
    username, which the client id determines)."""
    state = ClientState(client_id=event.client_id, lifecycle=Lifecycle.ACTIVE,
                        username=username_for(event.client_id))  # fmt: skip
    decision = decide(event, state, Context(needs_password=True))
    assert isinstance(decision, Apply), decision
    return decision.steps
