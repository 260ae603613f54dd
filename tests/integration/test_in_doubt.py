"""Once and in order against a slow API (issue 20): the in-doubt window and the fence.

The whole pipeline runs (real Redis, Dramatiq worker threads, the sandbox over HTTP) with a short
in-doubt window (`API_SETTLE_S`) and read timeout. The sandbox's named fault `late` applies a
call `late_ms` after the client gave up on it, as a slow server does; each test then waits until
the journal shows that late effect before judging the end state, so the late effect is counted
whatever the worker did. Every test here was seen failing on the code before the window.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from handlers import examples as f
from handlers import username_for
from handlers.events import parse_event
from handlers.requests import ChangeCredits
from tests.conftest import TEST_API_KEY
from tests.pipeline_support import outcomes, pipeline_settings, running_pipeline, wait_for_outcomes
from tests.servers import ThreadedUvicorn, wait_until
from worker import keys
from worker.api.rate_limit import RedisTokenBucket
from worker.errors import Ambiguous
from worker.ops.replay import replay
from worker.runtime import Runtime
from worker.sandbox import SandboxAdmin

SETTLE_S = 1.5  # the in-doubt window of these tests
READ_S = 0.4  # the client gives up after this
LATE_MS = 900  # ... and the sandbox applies the call this long after: inside the window


def _settings(redis_url: str, server: ThreadedUvicorn, **overrides: Any) -> Any:
    values: dict[str, Any] = {"api_settle_s": SETTLE_S, "api_read_timeout_s": READ_S}
    values.update(overrides)
    return pipeline_settings(redis_url, f"{server.url}/v6", TEST_API_KEY, **values)


@pytest.fixture
def slow(
    redis_url: str, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> Iterator[Runtime]:
    with running_pipeline(_settings(redis_url, sandbox_server)) as runtime:
        yield runtime


def _run(runtime: Runtime, client: redis.Redis, *events: dict[str, Any]) -> dict[str, Any]:
    """Publish `events` and wait for their first outcomes (by event id)."""
    runtime.publisher.publish_many(list(events))
    return wait_for_outcomes(client, [e["id"] for e in events], timeout_s=30)


def _late(sandbox: SandboxAdmin, operation: str) -> dict[str, Any]:
    """The fault: the next `operation` is applied LATE_MS after the client gave up on it."""
    return sandbox.set_faults({"operations": {operation: {"late_next": 1, "late_ms": LATE_MS}}})


def _wait_for_late_effect(sandbox: SandboxAdmin, operation: str, client_id: str) -> None:
    journal = lambda: sandbox.journal(operation=operation, username=username_for(client_id))  # noqa: E731
    wait_until(lambda: any(e["fault"] == "late" for e in journal()), what=f"the late {operation}")


def _grants(sandbox: SandboxAdmin, client_id: str) -> list[int]:
    journal = sandbox.journal(operation="add_credits", username=username_for(client_id))
    return [entry["amount"] for entry in journal if entry["applied"]]


def _account(sandbox: SandboxAdmin, client_id: str) -> dict[str, Any]:
    found: dict[str, Any] = sandbox.state()["subaccounts"][username_for(client_id)]
    return found


def test_1a_a_grant_applied_after_the_read_timeout_is_granted_once(
    slow: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """The grant's evidence is read after the window, where the late effect shows: applied."""
    _run(slow, redis_client, f.onboarded("lea"))
    _late(sandbox, "add_credits")
    paid = f.invoice_paid("lea", "INV-1", 40)
    assert _run(slow, redis_client, paid)[paid["id"]]["outcome"] == "applied"
    _wait_for_late_effect(sandbox, "add_credits", "lea")
    assert _grants(sandbox, "lea") == [40]
    assert slow.dead_letters.count() == 0


def test_1b_a_steadily_slow_api_grants_once(
    slow: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """Every grant is answered after the read timeout (latency served before applying): no
    retry is sent while the first is in doubt, so no retry's late effect is taken for it."""
    _run(slow, redis_client, f.onboarded("sly"), f.onboarded("marker"))
    sandbox.set_faults({"operations": {"add_credits": {"latency_ms": 700}}})
    paid = f.invoice_paid("sly", "INV-1", 40)
    assert _run(slow, redis_client, paid)[paid["id"]]["outcome"] == "applied"
    # A grant sent now, as slow as the others, lands after every grant sent before it:
    with pytest.raises(Ambiguous):
        slow.api.change_credits(ChangeCredits(username=username_for("marker"), amount=1))
    wait_until(lambda: _grants(sandbox, "marker") == [1], what="the marker grant")
    assert _grants(sandbox, "sly") == [40]
    assert len(sandbox.journal(operation="add_credits", username=username_for("sly"))) == 1


@pytest.fixture
def one_attempt(
    redis_url: str, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> Iterator[Runtime]:
    """One attempt per event: an event whose grant is judged not applied is dead-lettered."""
    settings = _settings(redis_url, sandbox_server, retry_max_attempts=1)
    with running_pipeline(settings) as runtime:
        yield runtime


def test_1c_the_same_invoice_from_a_second_source_is_a_duplicate(
    one_attempt: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """The late grant holds its invoice: the other source's report of it is a duplicate (it was
    dead-lettered `retries_exhausted`, its invoice released and granted again)."""
    _run(one_attempt, redis_client, f.onboarded("sue"))
    _late(sandbox, "add_credits")
    first = f.invoice_paid("sue", "INV-9", 40)
    assert _run(one_attempt, redis_client, first)[first["id"]]["outcome"] == "applied"
    second = f.event("invoice.paid", "sue", {"invoice_id": "INV-9", "credits": 40},
                     source="urn:other-billing")  # fmt: skip
    assert _run(one_attempt, redis_client, second)[second["id"]]["outcome"] == "duplicate"
    _wait_for_late_effect(sandbox, "add_credits", "sue")
    assert _grants(sandbox, "sue") == [40]


def test_1d_replaying_every_dead_letter_of_a_late_grant_grants_once(
    one_attempt: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """Whatever dead letter the late grant leaves, replaying it as it is (no operator verdict)
    grants nothing more (it was a `retries_exhausted` whose replay granted again)."""
    _run(one_attempt, redis_client, f.onboarded("rae"))
    _late(sandbox, "add_credits")
    paid = f.invoice_paid("rae", "INV-3", 40)
    _run(one_attempt, redis_client, paid)
    _wait_for_late_effect(sandbox, "add_credits", "rae")
    for letter in one_attempt.dead_letters.list():
        replay(one_attempt.redis, one_attempt.publisher, one_attempt.dead_letters, "saw",
               letter.key)  # fmt: skip
        wait_until(lambda: len(_outcomes_of(redis_client, paid["id"])) == 2, what="the replay")
    assert _grants(sandbox, "rae") == [40]
    assert one_attempt.dead_letters.count() == 0


def _outcomes_of(client: redis.Redis, event_id: str) -> list[str]:
    return [o["outcome"] for o in outcomes(client) if o.get("event_id") == event_id]


def test_1e_a_late_disable_never_lands_after_a_newer_enable(
    slow: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """suspend@3 then reactivate@4, delivered in order: the disable is in doubt, so the enable
    waits for its window; the subaccount ends enabled (it ended disabled: disable, enable, late
    disable)."""
    _run(slow, redis_client, f.onboarded("eve"))
    _late(sandbox, "disable")
    suspended = f.suspended("eve", t=3)
    slow.publisher.publish(suspended)
    # while in doubt, the client's other events are told until when (and then it expires)
    mark = keys.in_doubt("saw", "eve")
    wait_until(lambda: redis_client.exists(mark) == 1, what="the in-doubt mark")
    wait_for_outcomes(redis_client, [suspended["id"]], timeout_s=30)
    _run(slow, redis_client, f.reactivated("eve", t=4))
    _wait_for_late_effect(sandbox, "disable", "eve")
    assert _account(sandbox, "eve")["disabled"] is False
    toggles = [e["operation"] for e in sandbox.journal(username=username_for("eve"))
               if e["applied"] and e["operation"] in ("disable", "enable")]  # fmt: skip
    assert toggles == ["disable", "enable"]


def test_1f_a_late_update_never_overwrites_a_newer_one(
    slow: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """Two client.updated in order; the first is applied late: it is judged by reading the
    subaccount after its window, so the newer email stays (the older one won)."""
    _run(slow, redis_client, f.onboarded("uma"))
    _late(sandbox, "update")
    _run(slow, redis_client, f.updated("uma", t=1, email="old@uma.example"))
    _run(slow, redis_client, f.updated("uma", t=2, email="new@uma.example"))
    _wait_for_late_effect(sandbox, "update", "uma")
    assert _account(sandbox, "uma")["email"] == "new@uma.example"
    assert len([e for e in sandbox.journal(operation="update") if e["applied"]]) == 2


def test_2_no_send_while_the_lease_lapsed_in_the_rate_limiter(
    redis_url: str,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
    redis_client: redis.Redis,
) -> None:
    """The client-side limiter's next slot is further away than the lease (1.6 s against
    1.2 s): the older toggle's lease is extended for its wait, so the newer event cannot run
    meanwhile; the calls are one at a time and in order (the lease lapsed in the limiter, the
    reactivation ran meanwhile, and the slow disable landed last: disabled for good)."""
    rps = 5.0
    settings = _settings(
        redis_url, sandbox_server, api_read_timeout_s=0.3, api_connect_timeout_s=0.03,
        api_write_timeout_s=0.03, api_pool_timeout_s=0.03, lock_ttl_ms=1200,
        api_rate_limit_rps=rps, api_rate_limit_burst=1,
    )  # fmt: skip
    with running_pipeline(settings) as runtime:
        _run(runtime, redis_client, f.onboarded("rex"))
        sandbox.set_faults({"operations": {"disable": {"latency_ms": 250}}})
        bucket = RedisTokenBucket(redis_client, keys.rate_limit("saw"), rps, 1)
        for _ in range(8):  # other callers' slots: the next one is 1.6 s away
            bucket.reserve()
        older, newer = f.suspended("rex", t=3), f.reactivated("rex", t=4)
        runtime.publisher.publish(older)
        wait_until(lambda: redis_client.exists(keys.lock("saw", "rex")) == 1, what="the lease")
        runtime.publisher.publish(newer)
        wait_for_outcomes(redis_client, [older["id"], newer["id"]], timeout_s=30)
    calls = [e for e in sandbox.journal(username=username_for("rex"))
             if e["operation"] in ("disable", "enable")]  # fmt: skip
    for earlier, later in itertools.pairwise(calls):
        assert earlier["time"] <= later["received"]  # never two in flight at once
    assert [e["operation"] for e in calls if e["applied"]] == ["disable", "enable"]
    assert _account(sandbox, "rex")["disabled"] is False


def test_5_a_top_up_of_the_same_size_makes_the_grant_ambiguous_not_applied(
    slow: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """Our grant of 40 fails (503, not applied) while the subaccount's recurring 40 credits come
    due: the readings moved by exactly our amount, but a known top-up of that size could have
    done it. Dead-lettered `ambiguous_outcome` with both readings (it was judged applied and
    the invoice lost)."""
    recurring = {"amount": 40, "period": "monthly"}
    _run(slow, redis_client, f.onboarded("ola", recurring=recurring))
    sandbox.set_faults({"operations": {"add_credits": {"error_next": 1, "latency_ms": 300}}})
    paid = f.invoice_paid("ola", "INV-5", 40)
    slow.publisher.publish(paid)
    ledger = keys.ledger("saw", parse_event(paid).key)
    wait_until(lambda: redis_client.hexists(ledger, "add_credits"), what="the grant's send")
    sandbox.top_up(username_for("ola"))  # recurring credits due, while our call is in flight
    assert wait_for_outcomes(redis_client, [paid["id"]])[paid["id"]]["outcome"] == "dead_lettered"
    (letter,) = slow.dead_letters.list()
    assert letter.reason == "ambiguous_outcome"
    assert letter.readings["balance_after"] - letter.readings["balance_before"] == 40
    assert letter.readings["recurring_amount"] == 40
    assert _grants(sandbox, "ola") == []  # ours never applied; the 40 came from the top-up
