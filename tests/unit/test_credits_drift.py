"""Drift between recorded clients and the API, and the corrective events reconcile offers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from handlers import Context, decide
from handlers import examples as f
from handlers.events import parse_event
from handlers.plan import Apply, ClientState, Lifecycle, Skip
from handlers.requests import CreditType
from handlers.rules import RECONCILE_SOURCE
from worker.api.models import Subaccount
from worker.credits.drift import DriftKind, find_drift, plan_fix

V6 = Context(needs_password=True)
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
ONE_TIME = CreditType.ONE_TIME_CREDIT


def state(client: str, lifecycle: Lifecycle, credit_type: CreditType = ONE_TIME,
          at: dt.datetime = T0) -> ClientState:  # fmt: skip
    return ClientState(
        client_id=client, lifecycle=lifecycle, username=f"{client}-user", email=f"{client}@x.io",
        credit_type=credit_type, status_at=at, credit_type_at=at, email_at=at,
        churned_at=at if lifecycle == Lifecycle.CHURNED else None,
    )  # fmt: skip


def sub(username: str, disabled: bool = False, credit_type: CreditType = ONE_TIME) -> Subaccount:
    return Subaccount(username=username, email="x@x.io", credit_type=credit_type, disabled=disabled)


@pytest.mark.parametrize(
    ("recorded", "actual", "kinds"),
    [
        # in agreement: no drift
        (state("a", Lifecycle.ACTIVE), sub("a-user"), []),
        (state("a", Lifecycle.SUSPENDED), sub("a-user", disabled=True), []),
        (state("a", Lifecycle.CHURNED), None, []),
        # we believe it exists; the API does not have it
        (state("a", Lifecycle.ACTIVE), None, [DriftKind.MISSING]),
        (state("a", Lifecycle.ACTIVE), sub("a-user", disabled=True),
         [DriftKind.UNEXPECTED_DISABLED]),
        (state("a", Lifecycle.SUSPENDED), sub("a-user"), [DriftKind.UNEXPECTED_ENABLED]),
        (state("a", Lifecycle.CHURNED), sub("a-user"), [DriftKind.CHURNED_STILL_EXISTS]),
        (state("a", Lifecycle.ACTIVE), sub("a-user", credit_type=CreditType.UNLIMITED),
         [DriftKind.CREDIT_TYPE_MISMATCH]),
        # two differences at once are two items
        (state("a", Lifecycle.ACTIVE),
         sub("a-user", disabled=True, credit_type=CreditType.UNLIMITED),
         [DriftKind.CREDIT_TYPE_MISMATCH, DriftKind.UNEXPECTED_DISABLED]),
    ],
)  # fmt: skip
def test_find_drift(recorded: ClientState, actual: Subaccount | None,
                    kinds: list[DriftKind]) -> None:  # fmt: skip
    api = {actual.username: actual} if actual else {}
    assert [d.kind for d in find_drift([recorded], api)] == kinds


def test_a_subaccount_nobody_recorded_is_unmanaged_with_no_client() -> None:
    [drift] = find_drift([], {"stranger": sub("stranger")})
    assert (drift.kind, drift.client_id, drift.username) == (DriftKind.UNMANAGED, None, "stranger")
    assert not drift.fixable(recreate_missing=True)


def test_a_client_never_onboarded_is_not_compared() -> None:
    assert find_drift([ClientState(client_id="new")], {}) == []


@pytest.mark.parametrize(
    ("lifecycle", "actual", "event_type", "steps"),
    [
        (Lifecycle.ACTIVE, sub("a-user", disabled=True), "client.reactivated", "set_status"),
        (Lifecycle.SUSPENDED, sub("a-user"), "client.suspended", "set_status"),
        (Lifecycle.CHURNED, sub("a-user"), "client.churned", "delete"),
        (Lifecycle.ACTIVE, sub("a-user", credit_type=CreditType.UNLIMITED), "client.updated",
         "update"),
        (Lifecycle.ACTIVE, None, "client.onboarded", "create"),
        (Lifecycle.SUSPENDED, None, "client.onboarded", "create, set_status"),
    ],
)  # fmt: skip
def test_each_fixable_drift_gets_a_catalogue_event_the_handlers_apply(
    lifecycle: Lifecycle, actual: Subaccount | None, event_type: str, steps: str
) -> None:
    """The corrective event is valid, from reconcile, at now, and not skipped by the handlers."""
    recorded = state("a", lifecycle)
    [drift] = find_drift([recorded], {actual.username: actual} if actual else {})
    fix = plan_fix(drift, recorded, V6, NOW)
    assert fix.event is not None, fix.note
    assert (fix.event["type"], fix.event["source"], fix.event["subject"]) == (
        event_type,
        RECONCILE_SOURCE,
        "a",
    )
    assert fix.note.endswith(steps)


def test_a_fix_older_than_the_recorded_change_is_not_offered() -> None:
    """A toggle recorded after `now` (clock skew) would make the reactivation superseded."""
    recorded = state("a", Lifecycle.ACTIVE, at=NOW + dt.timedelta(hours=1))
    [drift] = find_drift([recorded], {"a-user": sub("a-user", disabled=True)})
    fix = plan_fix(drift, recorded, V6, NOW)
    assert fix.event is None
    assert "would not apply" in fix.note


def test_missing_is_fixable_only_when_asked() -> None:
    [drift] = find_drift([state("a", Lifecycle.ACTIVE)], {})
    assert not drift.fixable()
    assert drift.fixable(recreate_missing=True)


@pytest.mark.parametrize(
    ("raw", "lifecycle"),
    [
        (f.churned("a", t=10**9), Lifecycle.CHURNED),
        (f.onboarded("a", t=10**9), Lifecycle.ACTIVE),
    ],
)
def test_only_the_reconcile_source_re_asserts_a_recorded_state(
    raw: dict[str, Any], lifecycle: Lifecycle
) -> None:
    """The same churn / onboarding from any other source stays ignored, as before."""
    recorded = state("a", lifecycle)
    assert isinstance(decide(parse_event(raw), recorded, V6), Skip)
    assert isinstance(decide(parse_event({**raw, "source": RECONCILE_SOURCE}), recorded, V6), Apply)
