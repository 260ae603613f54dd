"""The API circuit breaker's pure decisions (worker/pipeline/circuit.py)."""

from __future__ import annotations

import random

import pytest

from handlers.plan import AddCredits, Create, Delete, SetStatus, Update
from handlers.requests import (
    ChangeCredits,
    CreateSubaccount,
    SetDisabled,
    UpdateSubaccount,
)
from worker.errors import (
    Ambiguous,
    ApiError,
    Conflict,
    MalformedResponse,
    NotFound,
    Permanent,
    Transient,
)
from worker.pipeline.circuit import (
    CircuitPolicy,
    Go,
    Hold,
    OpenCircuit,
    Probe,
    RecentCalls,
    admit,
    answered,
    hold_delay_ms,
    is_systemic,
    opens,
    operations_of,
    operations_of_plan,
)

USER = "acme-0a1b2c3d"
GRANT = AddCredits(request=ChangeCredits(username=USER, amount=5), business_key="invoice:I1")
CREATE = Create(request=CreateSubaccount(username=USER, email="a@example.com",
                                         credit_type="one_time_credit"),
                generate_password=True)  # fmt: skip
POLICY = CircuitPolicy(failure_threshold=10, min_clients=3, failure_ratio=0.5,
                       window_ms=30_000, probe_interval_ms=5_000)  # fmt: skip


@pytest.mark.parametrize(
    ("error", "systemic"),
    [
        (Transient("503", operation="create", status=503), True),
        (Transient("429", operation="create", status=429, retry_after=1.0), True),
        (Transient("ConnectError", operation="create"), True),
        (Ambiguous("ReadTimeout", operation="add_credits"), True),
        (MalformedResponse("not json", operation="add_credits", status=200), False),
        (Permanent("400", operation="create", status=400), False),
        (NotFound("404", operation="get_credits", status=404), False),
        (Conflict("409", operation="create", status=409), False),
        (None, False),
    ],
)
def test_only_the_apis_own_failures_are_systemic(error: ApiError | None, systemic: bool) -> None:
    assert is_systemic(error) is systemic


def test_operations_follow_the_calls_each_step_makes() -> None:
    assert operations_of(GRANT) == ("get_credits", "add_credits")
    taking = AddCredits(request=ChangeCredits(username=USER, amount=5, action="decrease"),
                        business_key="x")  # fmt: skip
    assert operations_of(taking) == ("get_credits", "remove_credits")
    assert operations_of(SetStatus(request=SetDisabled(username=USER, disabled=True))) == (
        "disable",
    )
    assert operations_of(Delete(username=USER)) == ("delete",)
    update = Update(request=UpdateSubaccount(username=USER, email="b@example.com"))
    assert operations_of_plan([CREATE, GRANT, update, GRANT]) == (
        "create", "get_credits", "add_credits", "update",
    )  # fmt: skip


def _open(op: str, due: float) -> OpenCircuit:
    return OpenCircuit(op, since_ms=1_000, probe_due=due)


def test_admit_goes_holds_until_the_latest_probe_or_asks_to_probe() -> None:
    ops = ("get_credits", "add_credits")
    assert admit(ops, {}, now=10.0) == Go(ops)
    assert admit(ops, {"create": _open("create", 5.0)}, now=10.0) == Go(ops)
    held = admit(ops, {"get_credits": _open("get_credits", 12.0),
                       "add_credits": _open("add_credits", 13.5)}, now=10.0)  # fmt: skip
    assert held == Hold(3500, "add_credits", 1_000)
    due = admit(ops, {"add_credits": _open("add_credits", 9.0)}, now=10.0)
    assert due == Probe(ops, ("add_credits",))


def test_held_events_come_back_after_the_probe_spread_over_one_interval() -> None:
    rng = random.Random(7)
    delays = [hold_delay_ms(2_000, POLICY, rng) for _ in range(500)]
    assert min(delays) > 2_000
    assert max(delays) <= 2_000 + POLICY.probe_interval_ms + 1
    assert max(delays) - min(delays) > POLICY.probe_interval_ms * 0.9  # spread, not a herd
    assert hold_delay_ms(-500, POLICY, rng) <= POLICY.probe_interval_ms + 1  # probe overdue


def test_a_failed_attempt_proves_what_the_api_answered() -> None:
    ops = ("get_credits", "add_credits")
    down = Transient("503", operation="add_credits", status=503)
    assert answered(ops, down) == ("get_credits",)
    assert answered(ops, Transient("503", operation="get_credits", status=503)) == ()
    assert answered(ops, NotFound("404", operation="get_credits", status=404)) == ("get_credits",)
    assert answered(ops, None) == ()  # undecidable, or an invoice held elsewhere: proves nothing
    assert answered(ops, Transient("503", operation="create", status=503)) == ()


@pytest.mark.parametrize(
    ("failures", "clients", "ratio", "expected"),
    [
        (10, 3, 0.5, True),
        (9, 3, 1.0, False),  # too few failures
        (50, 2, 1.0, False),  # one or two broken clients are not an outage
        (50, 10, 0.1, False),  # a 10 % error rate under heavy traffic is not an outage
    ],
)
def test_the_opening_rule(failures: int, clients: int, ratio: float, expected: bool) -> None:
    assert opens(failures, clients, ratio, POLICY) is expected


def test_recent_calls_forget_a_busy_past_by_count() -> None:
    recent = RecentCalls(POLICY.recent_calls)
    for _ in range(1000):
        recent.note("get_credits", failed=False)
    for _ in range(POLICY.failure_threshold):
        recent.note("get_credits", failed=True)
    assert recent.failure_ratio("get_credits") == 0.5
    assert recent.failure_ratio("create") == 1.0  # nothing known: the count alone decides
