"""The pipeline end to end: real Redis, real Dramatiq worker threads, the sandbox over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis

from handlers import examples as f
from handlers import username_for
from tests.conftest import TEST_API_KEY
from tests.pipeline_support import outcomes, pipeline_settings, running_pipeline, wait_for_outcomes
from tests.servers import ThreadedUvicorn, wait_until
from worker.pipeline import steps
from worker.runtime import Runtime
from worker.sandbox import SandboxAdmin


def _send(runtime: Runtime, *events: dict[str, Any]) -> list[str]:
    runtime.publisher.publish_many(list(events))
    return [e["id"] for e in events]


def _ops(sandbox: SandboxAdmin, username: str) -> list[tuple[str, Any]]:
    """The applied state changes of one subaccount, as (operation, amount) in order."""
    return [
        (entry["operation"], entry.get("amount"))
        for entry in sandbox.journal(username=username)
        if entry["applied"]
    ]


def _account(sandbox: SandboxAdmin, username: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = sandbox.state()["subaccounts"].get(username)
    return found


def test_each_catalogue_event_makes_exactly_its_calls(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """A client's whole life, in order, produces exactly the expected journal."""
    recurring = {"amount": 100, "period": "monthly", "start_date": "2026-02-01"}
    history = [
        f.onboarded("acme", t=0, credits=500, recurring=recurring),
        f.updated("acme", t=1, email="billing@acme.example"),
        f.invoice_paid("acme", "INV-1", 250, t=2),
        f.plan_changed("acme", t=3, credit_type="unlimited",
                       recurring={"amount": 50, "period": "weekly"}),
        f.suspended("acme", t=4),
        f.reactivated("acme", t=5),
        f.churned("acme", t=6),
    ]  # fmt: skip
    user = username_for("acme")
    for event in history:  # one at a time: in order, as the billing system would send them
        wait_for_outcomes(redis_client, _send(pipeline, event))
    assert _ops(sandbox, user) == [
        ("create", None),
        ("add_credits", 500),
        ("set_recurring", None),
        ("update", None),
        ("add_credits", 250),
        ("update", None),
        ("set_recurring", None),
        ("disable", None),
        ("enable", None),
        ("delete", 750),  # the remaining credits go back to the master account
    ]
    assert _account(sandbox, user) is None
    deleted = sandbox.journal(operation="delete")[0]
    assert deleted["result"]["returned_credits"] == 750


def test_duplicates_and_double_reported_invoices_apply_once(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """The same event twice is one effect; one invoice under two event ids is one grant."""
    wait_for_outcomes(redis_client, _send(pipeline, f.onboarded("bob")))
    paid = f.invoice_paid("bob", "INV-7", 40)
    stripe_copy = {**f.invoice_paid("bob", "INV-7", 40), "source": "urn:stripe"}
    ids = _send(pipeline, paid, paid, stripe_copy)
    found = wait_for_outcomes(redis_client, ids)
    assert {found[paid["id"]]["outcome"], found[stripe_copy["id"]]["outcome"]} == {
        "applied",
        "duplicate",
    }
    grants = [op for op in _ops(sandbox, username_for("bob")) if op[0] == "add_credits"]
    assert grants == [("add_credits", 40)]


def test_one_invoice_reported_with_two_amounts_is_granted_once_then_dead_lettered(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """A second report of an invoice that disagrees on the credits is not a silent duplicate:
    it is dead-lettered with both amounts, and nothing more is granted."""
    wait_for_outcomes(redis_client, _send(pipeline, f.onboarded("ben")))
    billing = f.invoice_paid("ben", "INV-8", 40)
    first = wait_for_outcomes(redis_client, _send(pipeline, billing))[billing["id"]]
    assert first["outcome"] == "applied"
    stripe = {**f.invoice_paid("ben", "INV-8", 55), "source": "urn:stripe"}
    found = wait_for_outcomes(redis_client, _send(pipeline, stripe))

    assert found[stripe["id"]]["outcome"] == "dead_lettered"
    (letter,) = pipeline.dead_letters.list()
    assert letter.reason == "business_key_conflict"
    assert letter.step == "add_credits"
    assert letter.readings["claimed_amount"] == 40
    assert letter.readings["claimed_by_event"] == first["key"]
    assert letter.readings["this_amount"] == 55
    assert letter.readings["business_key"] == "invoice:INV-8"
    assert "settle the difference by hand" in letter.detail
    grants = [op for op in _ops(sandbox, username_for("ben")) if op[0] == "add_credits"]
    assert grants == [("add_credits", 40)]


def test_out_of_order_toggles_and_early_invoice_converge(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """reactivated(t2) before suspended(t1) ends enabled; invoice before onboarding is applied."""
    early_invoice = f.invoice_paid("carol", "INV-1", 70, t=5)
    ids = _send(pipeline, early_invoice)
    wait_for_outcomes(redis_client, _send(pipeline, f.onboarded("carol", t=0)))
    wait_for_outcomes(redis_client, ids)
    late = _send(pipeline, f.reactivated("carol", t=20))
    wait_for_outcomes(redis_client, late)
    stale = _send(pipeline, f.suspended("carol", t=10))
    found = wait_for_outcomes(redis_client, stale)
    assert found[stale[0]]["outcome"] == "superseded"
    account = _account(sandbox, username_for("carol"))
    assert account is not None
    assert account["disabled"] is False
    assert account["balance"] == 70


def test_commit_then_drop_never_grants_twice(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """The sandbox applies the grant and drops the connection: exactly one grant follows."""
    wait_for_outcomes(redis_client, _send(pipeline, f.onboarded("dave")))
    sandbox.set_faults({"operations": {"add_credits": {"drop_next": 1}}})
    found = wait_for_outcomes(redis_client, _send(pipeline, f.invoice_paid("dave", "INV-3", 90)))
    journal = sandbox.journal(operation="add_credits", username=username_for("dave"))
    applied = [e for e in journal if e["applied"]]
    assert [e["fault"] for e in applied] == ["drop"]  # the dropped call is the only grant
    assert next(iter(found.values()))["outcome"] == "applied"  # resolved by evidence
    assert _account(sandbox, username_for("dave"))["balance"] == 90  # type: ignore[index]


def test_permanent_error_dead_letters_at_once(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """A 400 (master lacks credits) is dead-lettered on the first attempt with its reason."""
    wait_for_outcomes(redis_client, _send(pipeline, f.onboarded("erin")))
    sandbox.set_state({"master_balance": 10})
    event = f.invoice_paid("erin", "INV-4", 500)
    found = wait_for_outcomes(redis_client, _send(pipeline, event))
    assert found[event["id"]]["outcome"] == "dead_lettered"
    (letter,) = pipeline.dead_letters.list()
    assert letter.reason == "permanent_error"
    assert letter.attempts == 1
    assert letter.step == "add_credits"
    assert "HTTP 400" in letter.detail
    assert letter.event["id"] == event["id"]


def test_transient_errors_are_retried_until_applied(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """Three 503s, then success: the event is applied once, on its fourth attempt."""
    wait_for_outcomes(redis_client, _send(pipeline, f.onboarded("fay")))
    sandbox.set_faults({"operations": {"disable": {"error_next": 3, "error_status": 503}}})
    event = f.suspended("fay", t=5)
    found = wait_for_outcomes(redis_client, _send(pipeline, event))
    assert found[event["id"]]["outcome"] == "applied"
    assert found[event["id"]]["attempt"] == 4
    statuses = [e["status"] for e in sandbox.journal(operation="disable")]
    assert statuses == [503, 503, 503, 200]


def test_unknown_client_dead_letters_after_the_wait(
    redis_url: str,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
    redis_client: redis.Redis,
) -> None:
    """An event for a client never onboarded waits, then dead-letters `client_unknown`."""
    settings = pipeline_settings(
        redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY, unknown_client_wait_s=0.3
    )
    with running_pipeline(settings) as runtime:
        event = f.suspended("ghost")
        found = wait_for_outcomes(redis_client, _send(runtime, event))
        assert found[event["id"]]["outcome"] == "dead_lettered"
        assert runtime.dead_letters.list()[0].reason == "client_unknown"
    assert sandbox.journal() == []


def test_no_secret_reaches_redis_logs_or_dead_letters(
    pipeline: Runtime,
    sandbox: SandboxAdmin,
    redis_client: redis.Redis,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a v6 create, the generated password and the API key are nowhere we write."""
    generated: list[str] = []
    original = steps.generate_password

    def spy() -> str:
        generated.append(original())
        return generated[-1]

    monkeypatch.setattr(steps, "generate_password", spy)  # a spy on our own code, not a stub
    wait_for_outcomes(redis_client, _send(pipeline, f.onboarded("hal", credits=5)))
    sandbox.set_state({"master_balance": 0})
    wait_for_outcomes(redis_client, _send(pipeline, f.invoice_paid("hal", "INV-1", 9)))
    (password,) = generated
    assert sandbox.journal(operation="create")[0]["args"]["password"] == "***"
    dump = _dump_redis(redis_client)
    assert TEST_API_KEY.encode() not in dump
    assert password.encode() not in dump
    (letter,) = pipeline.dead_letters.list()
    assert TEST_API_KEY not in letter.encode()
    assert password not in letter.encode()
    logs = capsys.readouterr()
    assert "step.done" in logs.out  # the logs were captured ...
    assert TEST_API_KEY not in logs.out + logs.err
    assert password not in logs.out + logs.err


def _dump_redis(client: redis.Redis) -> bytes:
    """Every value of every key, whatever its type, as one blob to search."""
    blob = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            blob.append(client.get(key) or b"")
        elif kind == b"hash":
            blob += [k + b"=" + v for k, v in client.hgetall(key).items()]
        elif kind == b"list":
            blob += client.lrange(key, 0, -1)
        elif kind == b"set":
            blob += list(client.smembers(key))
        elif kind == b"zset":
            blob += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            blob += [repr(e).encode() for e in client.xrange(key)]
        blob.append(key)
    return b"\n".join(blob)


def test_a_refused_grant_frees_its_invoice_for_another_report(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """If the first report of an invoice is refused, a later report of it is granted."""
    wait_for_outcomes(redis_client, _send(pipeline, f.onboarded("lea")))
    sandbox.set_state({"master_balance": 0})
    first = f.invoice_paid("lea", "INV-5", 20)
    assert wait_for_outcomes(redis_client, _send(pipeline, first))[first["id"]]["outcome"] == (
        "dead_lettered"
    )
    sandbox.set_state({"master_balance": 100})
    second = {**f.invoice_paid("lea", "INV-5", 20), "source": "urn:stripe"}
    found = wait_for_outcomes(redis_client, _send(pipeline, second))
    assert found[second["id"]]["outcome"] == "applied"
    grants = [e for e in sandbox.journal(operation="add_credits") if e["applied"]]
    assert [e["amount"] for e in grants] == [20]


def test_retry_after_is_honoured(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """A 429 with Retry-After: 1 delays the next try by at least a second, then it applies."""
    wait_for_outcomes(redis_client, _send(pipeline, f.onboarded("max")))
    sandbox.set_faults({"rate_limit": {"rps": 1, "retry_after_s": 1}})
    with httpx.Client(base_url=sandbox.base_url) as http:  # spend the bucket's one token
        http.get("/v6/subaccounts", headers={"Authorization": f"Bearer {TEST_API_KEY}"})
    event = f.suspended("max", t=5)
    found = wait_for_outcomes(redis_client, _send(pipeline, event))
    assert found[event["id"]]["outcome"] == "applied"
    calls = sandbox.journal(operation="disable")
    limited = [c for c in calls if c["status"] == 429]
    assert limited, "the load did meet the rate limit"
    done = [c for c in calls if c["applied"]]
    assert len(done) == 1
    gap = _seconds(done[0]["time"]) - _seconds(limited[-1]["time"])
    assert gap >= 1.0


def _seconds(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso).timestamp()


def test_an_invalid_message_is_dead_lettered_once_however_often_delivered(
    pipeline: Runtime, redis_client: redis.Redis
) -> None:
    """A message that skipped validation is dead-lettered `invalid_event`, counted once."""
    import dramatiq

    bad = {"specversion": "1.0", "id": "bad-1", "type": "client.exploded"}
    for _ in range(2):
        message = dramatiq.Message(
            queue_name=pipeline.settings.queue_name, actor_name="process_event",
            args=(bad,), kwargs={}, options={"redis_message_id": f"m-{_}"},
        )  # fmt: skip
        pipeline.publisher.enqueue_messages([message])
    wait_until(lambda: len(outcomes(redis_client)) == 2, what="two outcomes")
    (letter,) = pipeline.dead_letters.list()
    assert letter.reason == "invalid_event"
    assert "type" in letter.detail
    assert pipeline.dead_letters.counts_by_reason() == {"invalid_event": 1}
