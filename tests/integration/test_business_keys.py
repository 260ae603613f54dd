"""One invoice, one grant, never zero: who holds an invoice's business key, and when it is given
back (README, dead-letter reasons: the business-key rule). Real Redis, the sandbox over HTTP.

Reproduces issue 10.1: an invoice whose grant gave up during an outage was held for 30 days by
its dead letter, so every later report of it was recorded `duplicate` and nothing was granted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from handlers import examples as f
from handlers import username_for
from tests.conftest import TEST_API_KEY
from tests.pipeline_support import (
    leave_grant_in_progress,
    outcomes,
    pipeline_settings,
    running_pipeline,
    wait_for_outcomes,
)
from tests.servers import ThreadedUvicorn, wait_until
from worker import keys
from worker.ops.replay import replay
from worker.pipeline.executor import AttemptInfo, Done, Executor, Requeue
from worker.runtime import Runtime, build_runtime
from worker.sandbox import SandboxAdmin

OUTAGE = {"operations": {"add_credits": {"error_rate": 1.0}}}  # 503, nothing applied


@pytest.fixture
def runtime(
    redis_url: str, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> Iterator[Runtime]:
    """The pipeline giving up after two attempts, as in the issue's reproduction."""
    settings = pipeline_settings(
        redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY, retry_max_attempts=2
    )
    with running_pipeline(settings) as running:
        yield running


def _run(runtime: Runtime, client: redis.Redis, event: dict[str, Any]) -> dict[str, Any]:
    """Publish `event` and wait for its first outcome."""
    runtime.publisher.publish(event)
    return wait_for_outcomes(client, [event["id"]])[event["id"]]


def _grants(sandbox: SandboxAdmin, client_id: str) -> list[int]:
    journal = sandbox.journal(operation="add_credits", username=username_for(client_id))
    return [entry["amount"] for entry in journal if entry["applied"]]


def _holder(client: redis.Redis, invoice_id: str) -> bytes | None:
    return client.get(keys.business("saw", "invoice", invoice_id))


def _report(client_id: str, invoice_id: str, credits: int, source: str) -> dict[str, Any]:
    """A report of an invoice from `source` (each source has its own event ids)."""
    return {**f.invoice_paid(client_id, invoice_id, credits), "source": source}


def test_an_invoice_given_up_during_an_outage_is_granted_by_its_next_report(
    runtime: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """Outage, give up (proven not applied), the outage ends, a second source reports it."""
    _run(runtime, redis_client, f.onboarded("zed"))
    sandbox.set_faults(OUTAGE)
    first = _run(runtime, redis_client, _report("zed", "INV-Z", 77, "urn:billing"))
    assert first["outcome"] == "dead_lettered"
    assert first["reason"] == "retries_exhausted"
    assert _holder(redis_client, "INV-Z") is None  # given back when it gave up
    sandbox.set_faults({})
    second = _run(runtime, redis_client, _report("zed", "INV-Z", 77, "urn:stripe"))
    assert second["outcome"] == "applied"
    assert _grants(sandbox, "zed") == [77]


def test_the_issue_sequence_outage_second_report_purge_third_report_grants_once(
    runtime: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """Issue 10.1 step by step: no report is recorded `duplicate` while nothing was granted;
    after the purge, the third report grants, once."""
    _run(runtime, redis_client, f.onboarded("zoe"))
    sandbox.set_faults(OUTAGE)
    a = _run(runtime, redis_client, _report("zoe", "INV-Z", 77, "urn:billing"))
    b = _run(runtime, redis_client, _report("zoe", "INV-Z", 77, "urn:stripe"))
    assert (a["outcome"], b["outcome"]) == ("dead_lettered", "dead_lettered")
    assert b["reason"] == "retries_exhausted"  # it tried: not a silent duplicate
    sandbox.set_faults({})
    assert runtime.dead_letters.purge(a["key"])
    third = _report("zoe", "INV-Z", 77, "urn:crm")
    assert _run(runtime, redis_client, third)["outcome"] == "applied"
    assert _grants(sandbox, "zoe") == [77]
    assert _holder(redis_client, "INV-Z") == outcomes(redis_client)[-1]["key"].encode()


def test_replaying_a_given_up_invoice_after_a_second_report_won_is_a_duplicate(
    runtime: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    _run(runtime, redis_client, f.onboarded("zia"))
    sandbox.set_faults(OUTAGE)
    first = _report("zia", "INV-Z", 77, "urn:billing")
    letter_key = _run(runtime, redis_client, first)["key"]
    sandbox.set_faults({})
    assert _run(runtime, redis_client, _report("zia", "INV-Z", 77, "urn:stripe"))["outcome"] == (
        "applied"
    )
    _replay(runtime, letter_key)
    wait_until(lambda: _outcomes_of(redis_client, first["id"]) == ["dead_lettered", "duplicate"],
               what="the replay's outcome")  # fmt: skip
    assert _grants(sandbox, "zia") == [77]


def test_replaying_a_given_up_invoice_nobody_else_reported_grants_it_once(
    runtime: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    _run(runtime, redis_client, f.onboarded("zak"))
    sandbox.set_faults(OUTAGE)
    first = _report("zak", "INV-Z", 77, "urn:billing")
    letter_key = _run(runtime, redis_client, first)["key"]
    sandbox.set_faults({})
    _replay(runtime, letter_key)
    wait_until(lambda: _outcomes_of(redis_client, first["id"]) == ["dead_lettered", "applied"],
               what="the replay's outcome")  # fmt: skip
    assert _grants(sandbox, "zak") == [77]


def test_a_report_of_an_invoice_held_undecided_is_dead_lettered_naming_the_holder(
    runtime: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """The holder's grant could not be judged (ambiguous_outcome): the second report is neither
    granted (it could double) nor a silent duplicate (it could be lost). Settling the holder,
    then replaying the second report, grants once."""
    _run(runtime, redis_client, f.onboarded("zora"))
    holder = _report("zora", "INV-Z", 77, "urn:billing")
    holder_key = leave_grant_in_progress(runtime.store, holder, {"balance_before": 0})
    sandbox.set_state({"subaccounts": {username_for("zora"): {"balance": 5}}})  # moved by 5
    assert _run(runtime, redis_client, holder)["reason"] == "ambiguous_outcome"

    second = _report("zora", "INV-Z", 77, "urn:stripe")
    found = _run(runtime, redis_client, second)
    assert (found["outcome"], found["reason"]) == ("dead_lettered", "business_key_held")
    letter = runtime.dead_letters.get(found["key"])
    assert letter is not None
    assert letter.readings["held_by_event"] == holder_key
    assert letter.readings["holder_dead_letter_reason"] == "ambiguous_outcome"
    assert f"held by event {holder_key}, dead-lettered ambiguous_outcome" in letter.detail
    assert "settle" in letter.detail
    assert _grants(sandbox, "zora") == []

    _replay(runtime, holder_key, resolve="not_applied")  # the operator checked: never granted
    wait_until(lambda: _outcomes_of(redis_client, holder["id"])[-1:] == ["applied"],
               what="the holder's replay")  # fmt: skip
    _replay(runtime, found["key"])
    wait_until(lambda: _outcomes_of(redis_client, second["id"]) == ["dead_lettered", "duplicate"],
               what="the second report's replay")  # fmt: skip
    assert _grants(sandbox, "zora") == [77]


@pytest.fixture
def executor(
    redis_url: str, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> Iterator[Executor]:
    built = build_runtime(pipeline_settings(redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY))
    yield built.executor
    built.close()


def test_a_second_report_waits_for_a_holder_that_may_still_grant(
    executor: Executor, sandbox: SandboxAdmin
) -> None:
    """The first report's grant failed (not applied) and waits for its retry: the second report
    waits too (not counted as a failure), then finds the grant done and is a duplicate."""
    assert executor.handle(f.onboarded("zina"), AttemptInfo()) == Done("applied")
    sandbox.set_faults({"operations": {"add_credits": {"error_next": 1, "error_status": 503}}})
    first = _report("zina", "INV-Z", 77, "urn:billing")
    retry = executor.handle(first, AttemptInfo())
    assert isinstance(retry, Requeue)
    assert retry.counts
    second = _report("zina", "INV-Z", 77, "urn:stripe")
    waiting = executor.handle(second, AttemptInfo())
    assert isinstance(waiting, Requeue)
    assert (waiting.reason, waiting.counts) == ("business_key_pending", False)
    assert executor.handle(first, AttemptInfo(attempt=2), retry.lease_token) == Done("applied")
    assert executor.handle(second, AttemptInfo()) == Done("duplicate")
    assert _grants(sandbox, "zina") == [77]


def _replay(runtime: Runtime, key: str, resolve: Any = None) -> None:
    replay(runtime.redis, runtime.publisher, runtime.dead_letters, "saw", key, resolve=resolve)


def _outcomes_of(client: redis.Redis, event_id: str) -> list[str]:
    return [o["outcome"] for o in outcomes(client) if o.get("event_id") == event_id]
