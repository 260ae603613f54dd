"""The low-credit rule: a pure decision from an alert's state and a fresh reading to what changes.

| alert | reading | result |
|---|---|---|
| closed | below warn (balance or runway) | `opened` (warning/critical), notified (1) |
| open | a worse level than the alert's | `escalated`, notified |
| open | above warn x clear ratio (both) | recovering; `cleared` after `clear_after_s` there |
| open | back below the clear level | recovery forgotten; level follows (never below warning) |
| any | unlimited subaccount | never alerts; an open alert clears at once |

(1) Once per period: if this subaccount's last notified opening is younger than `period_s`, the
alert is `reopened` under its old id without a notification, and its escalation and clearing
are quiet too (the digest lists it). So a subaccount is notified at most three times a period:
opened, escalated, cleared.

The alert id is stable: made once when an alert opens, kept by escalations and by a reopening
within the period, so receivers can group every notification of one episode.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from enum import StrEnum


class Level(StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"


_RANK = {Level.OK: 0, Level.WARNING: 1, Level.CRITICAL: 2}


@dataclass(frozen=True)
class Thresholds:
    """When a subaccount is low, and when it is well again (defaults from settings)."""

    warn_balance: int = 1000
    critical_balance: int = 100
    warn_runway_s: float = 3 * 86_400.0
    critical_runway_s: float = 86_400.0
    clear_ratio: float = 1.5
    clear_after_s: float = 900.0
    period_s: float = 86_400.0


RULE_FIELDS = ("warn_balance", "critical_balance", "warn_runway_s", "critical_runway_s")


def with_overrides(defaults: Thresholds, overrides: dict[str, float] | None) -> Thresholds:
    """A client's rule: the defaults with its own thresholds (unknown fields ignored)."""
    if not overrides:
        return defaults
    known = {k: type(getattr(defaults, k))(v) for k, v in overrides.items() if k in RULE_FIELDS}
    return replace(defaults, **known)


@dataclass(frozen=True)
class Reading:
    """What the rule looks at: one scan's balance and runway (None: unknown / never runs out)."""

    at: float
    balance: int
    runway_s: float | None
    unlimited: bool = False


@dataclass(frozen=True)
class AlertState:
    """The rule's memory for one subaccount (stored as JSON between scans)."""

    level: Level = Level.OK  # OK = no open alert
    alert_id: str | None = None  # of the open alert, or of the last one (for the period rule)
    opened_at: float | None = None
    notified_at: float | None = None  # last credits_low notification
    recovering_since: float | None = None
    quiet: bool = False  # reopened within the period without a notification

    @property
    def open(self) -> bool:
        return self.level != Level.OK


@dataclass(frozen=True)
class Transition:
    """A change worth recording: `opened`, `escalated` or `cleared`; `notify` says if it is sent."""

    change: str
    alert_id: str
    level: Level
    notify: bool


def level_of(reading: Reading, th: Thresholds) -> Level:
    """How low a reading is: critical, warning or ok (unlimited subaccounts are always ok)."""
    if reading.unlimited:
        return Level.OK
    runway = reading.runway_s
    if reading.balance < th.critical_balance or (
        runway is not None and runway < th.critical_runway_s
    ):
        return Level.CRITICAL
    if reading.balance < th.warn_balance or (runway is not None and runway < th.warn_runway_s):
        return Level.WARNING
    return Level.OK


def above_clear(reading: Reading, th: Thresholds) -> bool:
    """Whether a reading is comfortably above the warn thresholds (the hysteresis band)."""
    if reading.unlimited:
        return True
    runway_ok = reading.runway_s is None or reading.runway_s >= th.warn_runway_s * th.clear_ratio
    return reading.balance >= th.warn_balance * th.clear_ratio and runway_ok


def alert_id_for(key: str, opened_at: float) -> str:
    """A stable id for one alert episode of `key` (a username), from when it opened."""
    digest = hashlib.sha256(f"{key}\n{opened_at:.3f}".encode()).hexdigest()[:16]
    return f"cl_{digest}"


def evaluate(
    key: str, state: AlertState, reading: Reading, th: Thresholds
) -> tuple[AlertState, Transition | None]:
    """The new state of `key`'s alert after `reading`, and the transition if one happened."""
    level = level_of(reading, th)
    if not state.open:
        if level == Level.OK:
            return state, None
        return _open(key, state, reading, level, th)
    assert state.alert_id is not None  # an open alert always has its id
    if reading.unlimited:
        return _clear(state, state.alert_id)
    if _RANK[level] > _RANK[state.level]:
        if state.quiet:  # a reopening within the period escalates quietly too (the digest says)
            new = replace(state, level=level, recovering_since=None)
            return new, Transition("escalated", state.alert_id, level, notify=False)
        new = replace(state, level=level, recovering_since=None, notified_at=reading.at)
        return new, Transition("escalated", state.alert_id, level, notify=True)
    if above_clear(reading, th):
        since = state.recovering_since if state.recovering_since is not None else reading.at
        if reading.at - since >= th.clear_after_s:
            return _clear(state, state.alert_id)
        return replace(state, recovering_since=since), None
    kept = level if level != Level.OK else Level.WARNING
    return replace(state, level=kept, recovering_since=None), None


def _open(
    key: str, state: AlertState, reading: Reading, level: Level, th: Thresholds
) -> tuple[AlertState, Transition]:
    recent = state.notified_at is not None and reading.at - state.notified_at < th.period_s
    if recent and state.alert_id is not None:
        new = replace(state, level=level, recovering_since=None, quiet=True)
        return new, Transition("reopened", state.alert_id, level, notify=False)
    alert_id = alert_id_for(key, reading.at)
    new = AlertState(level=level, alert_id=alert_id, opened_at=reading.at, notified_at=reading.at)
    return new, Transition("opened", alert_id, level, notify=True)


def _clear(state: AlertState, alert_id: str) -> tuple[AlertState, Transition]:
    """Close the alert; a quiet one (whose reopening was not sent) closes quietly too."""
    new = replace(state, level=Level.OK, recovering_since=None, quiet=False)
    return new, Transition("cleared", alert_id, Level.OK, notify=not state.quiet)
