"""The outcome records ops reads (TEAM contract, issue 12): every ending on the outcome stream and,
in the same Lua call, on its client's timeline (newest first, capped), with `invoice_id`,
`amount` and the operator's `replay` count. Real Redis and the sandbox over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from handlers import examples as f
from handlers.events import parse_event
from tests.conftest import TEST_API_KEY
from tests.pipeline_support import (
    outcomes,
    pipeline_settings,
    running_pipeline,
    wait_for_outcomes,
)
from tests.servers import ThreadedUvicorn
from worker import keys
from worker.pipeline.broker import attempt_info
from worker.pipeline.executor import AttemptInfo, Done
from worker.pipeline.publish import REPLAY_OPTION, build_message
from worker.runtime import Runtime, build_runtime
from worker.sandbox import SandboxAdmin
from worker.settings import load_settings


@pytest.fixture
def runtime(
    redis_url: str, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> Iterator[Runtime]:
    settings = pipeline_settings(
        redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY, timeline_maxlen=3
    )
    built = build_runtime(settings)
    yield built
    built.close()


def _timeline(client: redis.Redis, client_id: str) -> list[dict[str, Any]]:
    return [json.loads(item) for item in client.lrange(keys.timeline("saw", client_id), 0, -1)]


def test_every_ending_goes_on_the_clients_timeline_newest_first_and_capped(
    runtime: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    handle = runtime.executor.handle
    assert handle(f.onboarded("tia"), AttemptInfo()) == Done("applied")
    paid = f.invoice_paid("tia", "INV-1", 40)
    assert handle(paid, AttemptInfo()) == Done("applied")
    assert handle(paid, AttemptInfo()) == Done("duplicate")  # delivered again
    sandbox.set_state({"master_balance": 0})
    assert handle(f.invoice_paid("tia", "INV-2", 9), AttemptInfo(attempt=1)) == Done(
        "dead_lettered"
    )

    timeline = _timeline(redis_client, "tia")
    assert [(r["outcome"], r.get("invoice_id")) for r in timeline] == [
        ("dead_lettered", "INV-2"),
        ("duplicate", "INV-1"),
        ("applied", "INV-1"),
    ]  # the onboarding fell off the end: capped at 3
    newest = timeline[0]
    assert newest["reason"] == "permanent_error"
    assert (newest["amount"], newest["replay"], newest["attempt"]) == (9, 0, 1)
    assert newest["steps"] == {}
    assert set(newest) >= {"key", "event_id", "client_id", "event_type", "outcome", "reason",
                           "at_ms", "steps", "attempt", "replay"}  # fmt: skip
    # the stream holds the same records, in order, all four
    stream = [r for r in outcomes(redis_client) if r["client_id"] == "tia"]
    assert [r["outcome"] for r in stream] == ["applied", "applied", "duplicate", "dead_lettered"]
    assert stream[1]["invoice_id"] == "INV-1"
    assert stream[1]["amount"] == "40"
    assert "invoice_id" not in stream[0]  # an onboarding has no invoice


def test_a_replayed_message_records_its_replay_count(
    redis_url: str, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    """ops' replay sets the message option `replay`; the outcome record carries it."""
    settings = pipeline_settings(redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY)
    with running_pipeline(settings) as runtime:
        wait_for_outcomes(redis_client, [runtime.publisher.publish(f.onboarded("rex")).event_id])
        paid = f.invoice_paid("rex", "INV-1", 5)
        message = build_message(parse_event(paid), settings.queue_name)
        message.options[REPLAY_OPTION] = 2
        runtime.publisher.enqueue_messages([message])
        found = wait_for_outcomes(redis_client, [paid["id"]])[paid["id"]]
    assert found["replay"] == "2"
    assert _timeline(redis_client, "rex")[0]["replay"] == 2


def test_a_message_dead_lettered_without_a_lease_goes_on_its_clients_timeline(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    """Invalid at consume time: on the timeline of the client it names; none when it names
    none."""
    bad = {**f.suspended("uma"), "type": "client.exploded"}
    assert runtime.executor.handle(bad, AttemptInfo()) == Done("dead_lettered")
    (item,) = _timeline(redis_client, "uma")
    assert (item["outcome"], item["reason"]) == ("dead_lettered", "invalid_event")
    nameless = {"specversion": "1.0", "id": "x-1", "type": "client.exploded"}
    assert runtime.executor.handle(nameless, AttemptInfo()) == Done("dead_lettered")
    assert list(redis_client.scan_iter("saw:timeline:*")) == [b"saw:timeline:uma"]


def test_the_replay_count_is_read_from_the_message_options() -> None:
    assert attempt_info({}).replay == 0
    assert attempt_info({REPLAY_OPTION: 3, "saw_attempt": 2}) == AttemptInfo(attempt=2, replay=3)


def test_the_timeline_cap_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().timeline_maxlen == 200
    monkeypatch.setenv("SUBACCOUNT_WORKER_TIMELINE_MAXLEN", "17")
    assert load_settings().timeline_maxlen == 17
