"""The handlers' decision tables: (event, known client state) → decision, with no I/O."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pydantic import ValidationError

from handlers import Context, decide, parse_event, username_for
from handlers import examples as f
from handlers.errors import InvalidEvent
from handlers.events import EVENT_CLASSES, EventType, PlanChanged
from handlers.examples import T0
from handlers.limits import EventLimits
from handlers.plan import (
    AddCredits,
    Apply,
    ClientState,
    Create,
    Delete,
    Lifecycle,
    Reject,
    SetRecurringCredits,
    SetStatus,
    Skip,
    Update,
    Wait,
)
from handlers.requests import USERNAME_RULE, Period, Recurring, SetDisabled

V6 = Context(needs_password=True)
V5 = Context(needs_password=False)


def _onboarded_state(client_id: str = "acme", t: float = 0) -> ClientState:
    decision = decide(
        parse_event(f.onboarded(client_id, t=t)), ClientState(client_id=client_id), V6
    )
    assert isinstance(decision, Apply)
    return decision.state


def test_username_rule_is_readable_and_distinct() -> None:
    """Derived usernames keep the id readable and differ for ids that sanitise alike."""
    assert username_for("Acme Corp").startswith("acme-corp-")
    assert username_for("Acme Corp") != username_for("acme-corp")
    assert username_for("Acme Corp") == username_for("Acme Corp")
    assert username_for("§§§").startswith("client-")
    assert len(username_for("x" * 500)) <= 64


def test_onboarding_creates_then_grants_then_sets_recurring() -> None:
    """A plan with credits and recurring credits becomes create → add credits → recurring."""
    raw = f.onboarded(
        "acme", credits=500, recurring={"amount": 100, "period": "monthly"}, username="acme1"
    )
    decision = decide(parse_event(raw), ClientState(client_id="acme"), V6)
    assert isinstance(decision, Apply)
    create, grant, recurring = decision.steps
    assert isinstance(create, Create)
    assert create.request.username == "acme1"
    assert create.generate_password
    assert create.request.password is None
    assert isinstance(grant, AddCredits)
    assert grant.request.amount == 500
    assert grant.business_key == "onboarding:acme"
    assert isinstance(recurring, SetRecurringCredits)
    assert recurring.request.recurring.amount == 100
    assert decision.state.lifecycle == Lifecycle.ACTIVE


def test_onboarding_on_v5_asks_for_no_password() -> None:
    """On v5 the confirmation mail sets the password, so none is generated."""
    decision = decide(parse_event(f.onboarded("acme")), ClientState(client_id="acme"), V5)
    assert isinstance(decision, Apply)
    (create,) = decision.steps
    assert isinstance(create, Create)
    assert not create.generate_password


# Rows: (event builder, the decision class expected for a client that is not onboarded yet)
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (f.invoice_paid("acme", "INV-1", 10), Wait),  # credits wait for the subaccount
        (f.suspended("acme"), Wait),  # a toggle waits too
        (f.updated("acme", email="n@example.com"), Wait),
        (f.churned("acme"), Wait),  # even a churn: it has nothing to delete yet
    ],
)
def test_events_for_unknown_clients_wait(raw: dict[str, object], expected: type) -> None:
    """Every event but onboarding waits until the client is onboarded."""
    assert isinstance(decide(parse_event(raw), ClientState(client_id="acme"), V6), expected)


# Rows: (toggle time, last applied toggle time, its tie-break (rank, id, source), expected)
@pytest.mark.parametrize(
    ("t", "status_at", "last_tie", "expected"),
    [
        (20, 10, (3, "evt-z", "urn:test"), Apply),  # newer: applied
        (5, 10, (2, "evt-0", "urn:test"), Skip),  # older than the last toggle: superseded
        (10, 10, (2, "evt-z", "urn:test"), Apply),  # same instant, after a reactivation
        (10, 10, (0, "evt-z", "urn:test"), Apply),  # same instant, after the onboarding
        (10, 10, (3, "evt-~", "urn:test"), Skip),  # same instant, a suspension with a later id
        (10, 10, None, Apply),  # same instant as a change recorded before ties were
    ],
)
def test_toggles_apply_only_when_later(
    t: float, status_at: float, last_tie: tuple[int, str, str] | None, expected: type
) -> None:
    """Suspend/reactivate apply only if later, in the total order, than the last toggle."""
    state = _onboarded_state(t=0).model_copy(
        update={"status_at": T0 + dt.timedelta(seconds=status_at), "status_tie": last_tie}
    )
    decision = decide(parse_event(f.suspended("acme", t=t)), state, V6)
    assert isinstance(decision, expected)
    if isinstance(decision, Apply):
        (step,) = decision.steps
        assert isinstance(step, SetStatus)
        assert step.request.disabled
        assert decision.state.lifecycle == Lifecycle.SUSPENDED
    else:
        assert isinstance(decision, Skip)
        assert decision.outcome == "superseded"


def test_update_changes_only_fields_no_newer_event_set() -> None:
    """A late client.updated changes email but not a credit type set by a newer plan.changed."""
    state = _onboarded_state(t=0)
    later = decide(parse_event(f.plan_changed("acme", t=20, credit_type="unlimited")), state, V6)
    assert isinstance(later, Apply)
    late = f.updated("acme", t=10, email="new@example.com", credit_type="one_time_credit")
    decision = decide(parse_event(late), later.state, V6)
    assert isinstance(decision, Apply)
    (step,) = decision.steps
    assert isinstance(step, Update)
    assert step.request.email == "new@example.com"
    assert step.request.credit_type is None
    assert decision.state.credit_type == "unlimited"


def test_fully_superseded_update_calls_nothing() -> None:
    """An update older than every field it touches is recorded superseded."""
    state = _onboarded_state(t=100)
    decision = decide(parse_event(f.updated("acme", t=50, email="x@example.com")), state, V6)
    assert isinstance(decision, Skip)
    assert decision.outcome == "superseded"


def test_churn_deletes_and_leaves_a_tombstone() -> None:
    """Churn deletes the subaccount; later events are ignored, a later invoice needs a human."""
    decision = decide(parse_event(f.churned("acme", t=5)), _onboarded_state(), V6)
    assert isinstance(decision, Apply)
    (step,) = decision.steps
    assert isinstance(step, Delete)
    tomb = decision.state
    assert tomb.lifecycle == Lifecycle.CHURNED
    ignored = decide(parse_event(f.reactivated("acme", t=1)), tomb, V6)
    assert isinstance(ignored, Skip)
    assert ignored.outcome == "ignored"
    paid = decide(parse_event(f.invoice_paid("acme", "INV-9", 5, t=9)), tomb, V6)
    assert isinstance(paid, Reject)
    assert paid.reason == "client_churned"
    again = decide(parse_event(f.onboarded("acme", t=10)), tomb, V6)
    assert isinstance(again, Skip)
    assert again.outcome == "ignored"


def test_invoice_grant_is_keyed_by_invoice_id() -> None:
    """Two events for one invoice produce the same business key, so the ledger grants once."""
    state = _onboarded_state()
    one = decide(parse_event(f.invoice_paid("acme", "INV-7", 30)), state, V6)
    two = decide(parse_event(f.invoice_paid("acme", "INV-7", 30, t=99)), state, V6)
    assert isinstance(one, Apply)
    assert isinstance(two, Apply)
    assert one.steps[0] == two.steps[0]
    assert isinstance(one.steps[0], AddCredits)
    assert one.steps[0].business_key == "invoice:INV-7"


def test_second_onboarding_is_ignored() -> None:
    """An onboarding for a client already onboarded (another event id) changes nothing."""
    decision = decide(parse_event(f.onboarded("acme", t=3)), _onboarded_state(), V6)
    assert isinstance(decision, Skip)
    assert decision.outcome == "ignored"


@pytest.mark.parametrize(
    "raw",
    [
        {"type": []},  # an unhashable type
        "1" * 5000,  # an integer too long for Python's JSON reader
        "[" * 100_000,  # nesting deeper than the recursion limit
        b"\xff\xfe",  # not UTF-8
        [1],  # not an object
    ],
)
def test_hostile_input_is_rejected_with_a_reason(raw: object) -> None:
    """Whatever arrives, parse_event answers InvalidEvent, never a stray exception."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)  # type: ignore[arg-type]
    assert caught.value.reasons


def test_event_classes_are_the_members_of_the_event_union() -> None:
    """EVENT_CLASSES is derived from `Event`: one class per catalogue type, none repeated."""
    assert len(EVENT_CLASSES) == len(EventType)
    assert {cls.model_fields["type"].annotation.__args__[0] for cls in EVENT_CLASSES} == set(
        EventType
    )


def test_one_username_rule_speaks_for_events_and_requests() -> None:
    """A bad username is refused with the same sentence by the catalogue and by a request."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(f.onboarded("acme", username="-bad"))
    with pytest.raises(ValidationError) as refused:
        SetDisabled(username="-bad", disabled=True)
    assert caught.value.reasons == [f"data.username: {USERNAME_RULE}"]
    assert USERNAME_RULE in str(refused.value)


def test_an_events_recurring_plan_is_the_request_the_plan_holds() -> None:
    """`recurring` of a plan.changed travels into the SetRecurring step as the same value."""
    recurring = {"amount": 7, "period": "weekly", "start_date": "2026-02-01"}
    event = parse_event(f.plan_changed("acme", t=10, recurring=recurring))
    decision = decide(event, _onboarded_state(), V6)
    assert isinstance(decision, Apply)
    (step,) = decision.steps
    assert isinstance(step, SetRecurringCredits)
    assert isinstance(event, PlanChanged)
    assert (
        step.request.recurring
        == event.data.recurring
        == Recurring(amount=7, period=Period.WEEKLY, start_date=dt.date(2026, 2, 1))
    )


# Rows: (event with one loosely typed value, the field its one reason must name)
LOOSE = [
    (f.invoice_paid("acme", "INV-1", True), "data.credits"),  # a boolean is not 1
    (f.invoice_paid("acme", "INV-1", "100"), "data.credits"),  # a string is not a number
    (f.invoice_paid("acme", "INV-1", 100.0), "data.credits"),  # nor is a decimal
    (f.invoice_paid("acme", "INV-1", 1e2), "data.credits"),  # 1e2 is a JSON decimal
    (f.invoice_paid("acme", "INV-1", " 100 "), "data.credits"),
    (f.onboarded("acme", credits="5"), "data.credits"),
    (f.onboarded("acme", recurring={"amount": 5, "period": "daily", "end_date": 0}),
     "data.recurring.end_date"),  # a date is an ISO string, not a unix time
    (f.onboarded("acme", recurring={"amount": 5, "period": "daily",
                                    "start_date": "2026-02-01T00:00:00Z"}),
     "data.recurring.start_date"),  # a date, not a timestamp
    (f.plan_changed("acme", recurring={"amount": "5", "period": "daily"}),
     "data.recurring.amount"),
    (f.plan_changed("acme", recurring={"amount": 5, "period": "daily", "active": "true"}),
     "data.recurring.active"),  # booleans are booleans
    (f.plan_changed("acme", recurring={"amount": 5, "period": "daily", "active": 1}),
     "data.recurring.active"),
    (f.onboarded("acme", email=12345), "data.email"),
    (f.invoice_paid("acme", 42, 5), "data.invoice_id"),  # an id is a string
    ({**f.suspended("acme"), "id": 7}, "id"),
    ({**f.suspended("acme"), "time": 1767225600}, "time"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "field"), LOOSE)
def test_loose_types_are_refused_naming_the_field(raw: dict[str, object], field: str) -> None:
    """Strict JSON types: no value is coerced; the one reason names the field."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert [r.partition(": ")[0] for r in caught.value.reasons] == [field]
    with pytest.raises(InvalidEvent):
        parse_event(json.dumps(raw))  # the same from JSON text


def test_strict_types_still_accept_what_json_means() -> None:
    """Integers, ISO dates and booleans as JSON has them are accepted and kept as sent."""
    raw = f.plan_changed(
        "acme",
        recurring={"amount": 5, "period": "daily", "start_date": "2026-02-01", "active": False},
    )
    event = parse_event(raw)
    assert isinstance(event, PlanChanged)
    assert event.data.recurring == Recurring(
        amount=5, period=Period.DAILY, start_date=dt.date(2026, 2, 1), active=False
    )
    assert event.to_message()["data"] == raw["data"]


# Rows: (event, the field over the cap and its value)
OVER_CAP = [
    (f.invoice_paid("acme", "INV-1", 10_000_001), "data.credits: 10000001"),  # one too many
    (f.onboarded("acme", credits=1_000_000_000), "data.credits: 1000000000"),  # the typo
    (f.plan_changed("acme", recurring={"amount": 10_000_001, "period": "daily"}),
     "data.recurring.amount: 10000001"),  # recurring credits are grants too
]  # fmt: skip


@pytest.mark.parametrize(("raw", "field_and_value"), OVER_CAP)
def test_credits_above_the_default_cap_per_grant_are_refused(
    raw: dict[str, object], field_and_value: str
) -> None:
    """The default cap is 10,000,000 credits per grant; more is refused, naming the field."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.reasons == [
        f"{field_and_value} is above the maximum of 10000000 credits per grant"
    ]


def test_the_cap_is_what_the_caller_passes() -> None:
    """A deployment's cap comes in through `limits`: 500 passes 500 and refuses 501."""
    limits = EventLimits(max_credits_per_grant=500)
    assert parse_event(f.invoice_paid("acme", "INV-1", 500), limits)
    with pytest.raises(InvalidEvent) as caught:
        parse_event(f.invoice_paid("acme", "INV-1", 501), limits)
    assert caught.value.reasons == [
        "data.credits: 501 is above the maximum of 500 credits per grant"
    ]
    assert parse_event(f.invoice_paid("acme", "INV-1", 10_000_000))  # the default allows it
