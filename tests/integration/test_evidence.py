"""Once, while subaccounts send mail (issue 13): a grant judged by allocated = balance + used,
net of this system's other grants, and a grant left by a killed worker settled before the next.

Real Redis, the sandbox over HTTP with mail sending on (`PUT /_sandbox/sending`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from handlers import examples as f
from handlers import username_for
from handlers.requests import ChangeCredits
from tests.conftest import TEST_API_KEY
from tests.pipeline_support import leave_grant_in_progress, pipeline_settings
from tests.servers import ThreadedUvicorn
from worker import keys
from worker.pipeline.executor import AttemptInfo, Done
from worker.pipeline.steps import ALLOCATED, BALANCE_ONLY
from worker.runtime import Runtime, build_runtime
from worker.sandbox import SandboxAdmin, create_app

PLENTY = 10_000_000  # credits to send from for the length of a test (the cap per grant)
FAST_SENDING = 1_000_000.0  # emails/s: thousands of credits move between any two readings


@pytest.fixture
def runtime(
    redis_url: str, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> Iterator[Runtime]:
    built = build_runtime(pipeline_settings(redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY))
    yield built
    built.close()


def _grants(sandbox: SandboxAdmin, client_id: str) -> list[int]:
    journal = sandbox.journal(operation="add_credits", username=username_for(client_id))
    return [entry["amount"] for entry in journal if entry["applied"]]


def test_a_grant_answered_502_after_commit_while_the_subaccount_sends_is_applied_by_evidence(
    runtime: Runtime, sandbox: SandboxAdmin
) -> None:
    """The balance falls between the two readings; balance + used moved by exactly the grant."""
    assert runtime.executor.handle(f.onboarded("sam", credits=PLENTY), AttemptInfo()) == Done(
        "applied"
    )
    sandbox.set_sending(FAST_SENDING, seed=7)
    sandbox.set_faults({"operations": {"add_credits": {"fail_after_commit_next": 1,
                                                       "error_status": 502}}})  # fmt: skip
    paid = f.invoice_paid("sam", "INV-1", 90)
    assert runtime.executor.handle(paid, AttemptInfo()) == Done("applied")
    assert _grants(sandbox, "sam") == [PLENTY, 90]
    assert sandbox.journal(operation="add_credits")[-1]["fault"] == "fail_after_commit"
    assert sandbox.sending()["sent"] > 0  # the subaccount did send meanwhile
    assert runtime.dead_letters.count() == 0


@pytest.mark.parametrize("reached_the_api", [True, False], ids=["applied", "not_applied"])
def test_a_grant_left_by_a_killed_worker_is_settled_before_the_next_grant(
    runtime: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis, reached_the_api: bool
) -> None:
    """A worker dies mid-grant; another invoice of the client is delivered first. Its attempt
    settles the dead one's grant in that event's ledger, then grants its own; the dead one's
    redelivery finds its grant settled. Both granted once; nothing ambiguous."""
    assert runtime.executor.handle(f.onboarded("kit"), AttemptInfo()) == Done("applied")
    user = username_for("kit")
    before = runtime.api.get_credit_details(user)
    killed = f.invoice_paid("kit", "INV-1", 40)
    evidence = {"balance_before": before.balance, "used_before": before.used}
    killed_key = leave_grant_in_progress(runtime.store, killed, evidence)
    if reached_the_api:  # the dead worker's call was applied; its answer was never read
        runtime.api.change_credits(ChangeCredits(username=user, amount=40))

    later = f.invoice_paid("kit", "INV-2", 25)
    assert runtime.executor.handle(later, AttemptInfo()) == Done("applied")
    settled = _step(redis_client, killed_key)
    if reached_the_api:
        assert settled is not None
        assert settled["state"] == "done"
    else:
        assert settled is None  # forgotten: its event sends it afresh
    assert runtime.executor.handle(killed, AttemptInfo()) == Done("applied")

    assert sorted(_grants(sandbox, "kit")) == [25, 40]
    assert runtime.dead_letters.count() == 0
    assert runtime.api.get_credit_details(user).balance == before.balance + 65


def test_our_grant_applied_between_two_readings_is_accounted_for(
    runtime: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """The dead worker's grant is judged only on its own redelivery (here: no later event took
    the lease first), after another grant of ours moved allocated: that grant is subtracted."""
    assert runtime.executor.handle(f.onboarded("kay"), AttemptInfo()) == Done("applied")
    user = username_for("kay")
    before = runtime.api.get_credit_details(user)
    killed = f.invoice_paid("kay", "INV-1", 40)
    evidence = {"balance_before": before.balance, "used_before": before.used}
    leave_grant_in_progress(runtime.store, killed, evidence)
    runtime.api.change_credits(ChangeCredits(username=user, amount=40))
    # another grant of ours, recorded done and started after the killed one
    other = f.invoice_paid("kay", "INV-2", 25)
    other_key = leave_grant_in_progress(runtime.store, other, evidence)
    runtime.api.change_credits(ChangeCredits(username=user, amount=25))
    _mark_done(redis_client, other_key)

    assert runtime.executor.handle(killed, AttemptInfo()) == Done("applied")
    assert _grants(sandbox, "kay") == [40, 25]
    assert runtime.dead_letters.count() == 0


def _step(client: redis.Redis, event_key: str) -> dict[str, Any] | None:
    raw = client.hget(keys.ledger("saw", event_key), "add_credits")
    return json.loads(raw) if raw else None


def _mark_done(client: redis.Redis, event_key: str) -> None:
    record = _step(client, event_key)
    assert record is not None
    record.update(state="done", result={"balance": 0})
    client.hset(keys.ledger("saw", event_key), "add_credits", json.dumps(record))


# --- a surface that reports no usage -------------------------------------------------------


class _WithoutUsed:
    """ASGI middleware: the sandbox's answers with `used` taken out of credit details, as from a
    surface that does not report usage."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/credits"):
            await self._app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        body = bytearray()

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            data = json.loads(body) if body else None
            out = json.dumps(_drop_used(data)).encode() if data is not None else bytes(body)
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(out)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": out})

        await self._app(scope, receive, capture)


def _drop_used(data: Any) -> Any:
    """`data` without any `used` field, however deep (the surfaces wrap their answers)."""
    if isinstance(data, dict):
        return {k: _drop_used(v) for k, v in data.items() if k != "used"}
    return data


@pytest.fixture
def no_usage_sandbox() -> Iterator[ThreadedUvicorn]:
    server = ThreadedUvicorn(_WithoutUsed(create_app(api_key=TEST_API_KEY))).start()
    yield server
    server.stop()


def test_a_grant_whose_surface_reports_no_usage_is_never_guessed_while_the_balance_moves(
    redis_url: str, no_usage_sandbox: ThreadedUvicorn
) -> None:
    """Without `used` the balance is the evidence; mail sent between the readings moves it, so
    the grant is dead-lettered `ambiguous_outcome` with both readings and what they were."""
    settings = pipeline_settings(redis_url, f"{no_usage_sandbox.url}/v6", TEST_API_KEY)
    runtime = build_runtime(settings)
    admin = SandboxAdmin(no_usage_sandbox.url)
    try:
        onboard = f.onboarded("noa", credits=PLENTY)
        assert runtime.executor.handle(onboard, AttemptInfo()) == Done("applied")
        assert runtime.api.get_credit_details(username_for("noa")).used is None
        admin.set_sending(FAST_SENDING, seed=7)
        admin.set_faults({"operations": {"add_credits": {"drop_next": 1}}})
        paid = f.invoice_paid("noa", "INV-1", 90)
        assert runtime.executor.handle(paid, AttemptInfo()) == Done("dead_lettered")
        (letter,) = runtime.dead_letters.list()
        assert letter.reason == "ambiguous_outcome"
        readings = letter.readings
        assert readings["evidence"] == BALANCE_ONLY
        assert readings["amount"] == 90
        assert 0 < readings["balance_before"] <= PLENTY  # a real reading
        assert readings["balance_after"] not in (
            readings["balance_before"],
            readings["balance_before"] + 90,
        )
        applied = [e for e in admin.journal(operation="add_credits") if e["applied"]]
        assert [e["amount"] for e in applied] == [PLENTY, 90]  # granted once, never re-sent
    finally:
        admin.close()
        runtime.close()


def test_the_evidence_names_its_basis_when_usage_is_reported(
    runtime: Runtime, sandbox: SandboxAdmin
) -> None:
    """An undecidable grant on a surface with usage says allocated was compared."""
    assert runtime.executor.handle(f.onboarded("ned"), AttemptInfo()) == Done("applied")
    killed = f.invoice_paid("ned", "INV-1", 40)
    leave_grant_in_progress(runtime.store, killed, {"balance_before": 0, "used_before": 0})
    sandbox.set_state({"subaccounts": {username_for("ned"): {"balance": 7}}})  # not a grant
    assert runtime.executor.handle(killed, AttemptInfo()) == Done("dead_lettered")
    (letter,) = runtime.dead_letters.list()
    assert letter.readings["evidence"] == ALLOCATED
    assert (letter.readings["used_before"], letter.readings["used_after"]) == (0, 0)
