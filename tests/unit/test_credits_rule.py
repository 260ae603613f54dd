"""The low-credit rule as a decision table: alert state and reading in, new state and change out."""

from __future__ import annotations

import pytest

from worker.credits.rule import (
    AlertState,
    Level,
    Reading,
    Thresholds,
    alert_id_for,
    evaluate,
    level_of,
)

TH = Thresholds(
    warn_balance=1000,
    critical_balance=100,
    warn_runway_s=3000.0,
    critical_runway_s=1000.0,
    clear_ratio=1.5,
    clear_after_s=60.0,
    period_s=3600.0,
)
OPEN_ID = "cl_open"
WARNING = AlertState(level=Level.WARNING, alert_id=OPEN_ID, opened_at=0.0, notified_at=0.0)


def r(at: float, balance: int, runway: float | None = None, unlimited: bool = False) -> Reading:
    return Reading(at=at, balance=balance, runway_s=runway, unlimited=unlimited)


@pytest.mark.parametrize(
    ("reading", "level"),
    [
        (r(0, 5000), Level.OK),
        (r(0, 999), Level.WARNING),  # below the warn balance
        (r(0, 5000, runway=2999), Level.WARNING),  # enough credits, but gone within the runway
        (r(0, 99), Level.CRITICAL),
        (r(0, 5000, runway=999), Level.CRITICAL),
        (r(0, 0, unlimited=True), Level.OK),  # unlimited subaccounts never alert
        (r(0, 5000, runway=None), Level.OK),  # never runs out
    ],
)
def test_level_of(reading: Reading, level: Level) -> None:
    assert level_of(reading, TH) == level


# (state before, reading, change expected or None, level after, notified)
TABLE = [
    # closed and fine: nothing
    (AlertState(), r(10, 5000), None, Level.OK, None),
    # closed, falls below warn: opened and notified
    (AlertState(), r(10, 900), "opened", Level.WARNING, True),
    # closed, falls straight to critical: opened at critical
    (AlertState(), r(10, 50), "opened", Level.CRITICAL, True),
    # open warning, still below: nothing new (not one alert per scan)
    (WARNING, r(10, 800), None, Level.WARNING, None),
    # open warning, worse: escalated and notified
    (WARNING, r(10, 50), "escalated", Level.CRITICAL, True),
    # open, back above warn but inside the hysteresis band (< 1500): stays open
    (WARNING, r(10, 1200), None, Level.WARNING, None),
    # open, above the clear level for the first time: recovering, not cleared yet
    (WARNING, r(10, 2000), None, Level.WARNING, None),
    # open, recovering since 10, still above at 70 (60 s later): cleared and notified
    (AlertState(Level.WARNING, OPEN_ID, 0.0, 0.0, recovering_since=10.0), r(70, 2000),
     "cleared", Level.OK, True),
    # open, recovering but fell back into the band: recovery forgotten, still open
    (AlertState(Level.WARNING, OPEN_ID, 0.0, 0.0, recovering_since=10.0), r(70, 1200),
     None, Level.WARNING, None),
    # open critical, improving to warning: stays open (level follows, no notification)
    (AlertState(Level.CRITICAL, OPEN_ID, 0.0, 0.0), r(10, 500), None, Level.WARNING, None),
    # open, the subaccount became unlimited: cleared at once
    (WARNING, r(10, 0, unlimited=True), "cleared", Level.OK, True),
    # closed less than a period after the last notified opening: reopened quietly, same id
    (AlertState(Level.OK, OPEN_ID, 0.0, notified_at=0.0), r(100, 900), "reopened",
     Level.WARNING, False),
    # closed more than a period after it: a new alert, notified
    (AlertState(Level.OK, OPEN_ID, 0.0, notified_at=0.0), r(4000, 900), "opened",
     Level.WARNING, True),
    # a quietly reopened alert clears quietly (its opening was never sent)
    (AlertState(Level.WARNING, OPEN_ID, 0.0, 0.0, recovering_since=10.0, quiet=True),
     r(70, 2000), "cleared", Level.OK, False),
    # ...and escalates quietly: at most opened, escalated, cleared notified per period
    (AlertState(Level.WARNING, OPEN_ID, 0.0, 0.0, quiet=True), r(70, 50), "escalated",
     Level.CRITICAL, False),
]  # fmt: skip


@pytest.mark.parametrize(("state", "reading", "change", "level", "notified"), TABLE)
def test_rule(
    state: AlertState, reading: Reading, change: str | None, level: Level, notified: bool | None
) -> None:
    new, transition = evaluate("acme-1", state, reading, TH)
    assert new.level == level
    if change is None:
        assert transition is None
    else:
        assert transition is not None
        assert (transition.change, transition.notify) == (change, notified)


def test_the_alert_id_is_stable_through_an_episode() -> None:
    """Opened, escalated, cleared: the same id throughout; a new episode gets a new one."""
    state, opened = evaluate("acme-1", AlertState(), r(0, 900), TH)
    state, escalated = evaluate("acme-1", state, r(10, 50), TH)
    state, _ = evaluate("acme-1", state, r(20, 5000), TH)
    state, cleared = evaluate("acme-1", state, r(100, 5000), TH)
    assert opened is not None
    assert escalated is not None
    assert cleared is not None
    assert opened.alert_id == escalated.alert_id == cleared.alert_id == alert_id_for("acme-1", 0)
    _, again = evaluate("acme-1", state, r(5000, 900), TH)
    assert again is not None
    assert again.change == "opened"
    assert again.alert_id != opened.alert_id


def test_a_falling_balance_opens_one_alert_not_one_per_scan() -> None:
    """Scans every 10 s of a balance falling from 1200 to 0: one opening, one escalation."""
    state = AlertState()
    changes = []
    for i, balance in enumerate(range(1200, -1, -100)):
        state, change = evaluate("acme-1", state, r(i * 10.0, balance), TH)
        if change:
            changes.append(change.change)
    assert changes == ["opened", "escalated"]
