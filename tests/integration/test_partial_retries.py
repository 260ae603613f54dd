"""A partly applied event keeps its client's lease through its retry: nothing overtakes it.

These drive the executor directly (real Redis, the sandbox over HTTP) to control exactly which
delivery runs when; each reproduces a sequence that once broke the promises.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from handlers import examples as f
from handlers import username_for
from tests.conftest import TEST_API_KEY
from tests.pipeline_support import pipeline_settings
from tests.servers import ThreadedUvicorn
from worker.pipeline.executor import AttemptInfo, Done, Executor, Requeue
from worker.runtime import build_runtime
from worker.sandbox import SandboxAdmin


@pytest.fixture
def executor(
    redis_url: str, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> Iterator[Executor]:
    runtime = build_runtime(pipeline_settings(redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY))
    yield runtime.executor
    runtime.close()


def test_an_older_event_cannot_slip_between_a_retry_and_its_first_attempt(
    executor: Executor, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """plan.changed(t10) half applied; client.updated(t5) waits for it, then is superseded."""
    assert executor.handle(f.onboarded("acme"), AttemptInfo()) == Done("applied")
    sandbox.set_faults({"operations": {"set_recurring": {"error_next": 1}}})
    plan = f.plan_changed("acme", t=10, credit_type="unlimited",
                          recurring={"amount": 5, "period": "weekly"})  # fmt: skip
    first = executor.handle(plan, AttemptInfo())
    assert isinstance(first, Requeue)
    assert first.lease_token is not None
    older = f.updated("acme", t=5, credit_type="one_time_credit")
    blocked = executor.handle(older, AttemptInfo())
    assert isinstance(blocked, Requeue)
    assert blocked.reason == "client_busy"
    assert executor.handle(plan, AttemptInfo(attempt=2), first.lease_token) == Done("applied")
    assert executor.handle(older, AttemptInfo()) == Done("superseded")
    account = sandbox.state()["subaccounts"][username_for("acme")]
    state = json.loads(redis_client.get("saw:client:acme") or b"{}")
    assert account["credit_type"] == state["credit_type"] == "unlimited"


def test_a_second_onboarding_report_cannot_swallow_the_first_ones_grant(
    executor: Executor, sandbox: SandboxAdmin
) -> None:
    """The onboarding's grant fails once; a re-sent onboarding waits, and the grant lands."""
    sandbox.set_faults({"operations": {"add_credits": {"error_next": 1}}})
    first_report = f.onboarded("bea", credits=70)
    first = executor.handle(first_report, AttemptInfo())
    assert isinstance(first, Requeue)
    assert first.lease_token is not None
    second_report = f.onboarded("bea", credits=70)  # the CRM sent it again, new event id
    assert isinstance(executor.handle(second_report, AttemptInfo()), Requeue)
    retry = executor.handle(first_report, AttemptInfo(attempt=2), first.lease_token)
    assert retry == Done("applied")
    assert executor.handle(second_report, AttemptInfo()) == Done("ignored")
    assert sandbox.state()["subaccounts"][username_for("bea")]["balance"] == 70


def test_a_5xx_on_a_grant_is_judged_by_evidence(executor: Executor, sandbox: SandboxAdmin) -> None:
    """A grant answered 502 after it was applied is recognised as applied, not sent again;
    one answered 502 without applying is sent again."""
    assert executor.handle(f.onboarded("cy"), AttemptInfo()) == Done("applied")
    sandbox.set_faults({"operations": {"add_credits": {"fail_after_commit_next": 1,
                                                       "error_status": 502}}})  # fmt: skip
    assert executor.handle(f.invoice_paid("cy", "INV-1", 15), AttemptInfo()) == Done("applied")
    sandbox.set_faults({"operations": {"add_credits": {"error_next": 1, "error_status": 502}}})
    paid = f.invoice_paid("cy", "INV-2", 5)
    first = executor.handle(paid, AttemptInfo())
    assert isinstance(first, Requeue)  # balance unchanged: not applied, send again later
    assert executor.handle(paid, AttemptInfo(attempt=2), first.lease_token) == Done("applied")
    grants = [e for e in sandbox.journal(operation="add_credits") if e["applied"]]
    assert [e["amount"] for e in grants] == [15, 5]
    assert sandbox.state()["subaccounts"][username_for("cy")]["balance"] == 20
