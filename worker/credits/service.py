"""The credits service layer: typed answers from the snapshots, for the CLI and the console.

Every function takes its dependencies explicitly (a `redis.Redis` and the key prefix, or the
`Settings`) and returns dataclasses; rendering (rich tables, `--json`, pages) is the caller's.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from handlers.plan import ClientState
from worker import keys
from worker.credits.lease import LeaseLost
from worker.credits.monitor import build_monitor, request_scan, thresholds_from
from worker.credits.rule import RULE_FIELDS, AlertState, Level, Thresholds, with_overrides
from worker.credits.scan import ScanReport
from worker.credits.store import CreditsStore, Snapshot
from worker.errors import ConfigError
from worker.settings import Settings


@dataclass(frozen=True)
class CreditRow:
    """One subaccount's latest snapshot with its rate, runway and alert state."""

    client_id: str | None
    username: str
    balance: int
    used: int | None
    credit_type: str
    disabled: bool
    rate_per_s: float | None
    runway_s: float | None
    level: str  # ok, warning, critical
    low: bool  # a low-credit alert is open
    alert_id: str | None
    read_at: float
    age_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CreditDetail:
    """`credits show`: the row, the snapshot history (newest first) and the alert history."""

    row: CreditRow
    history: list[Snapshot] = field(default_factory=list)
    alert_log: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.row.to_json(),
            "history": [snap.model_dump(mode="json") for snap in self.history],
            "alert_log": self.alert_log,
        }


@dataclass(frozen=True)
class RefreshResult:
    """What `credits refresh` did: scanned here (with the report), or asked the monitor."""

    scanned_here: bool
    requested: bool
    report: ScanReport | None = None


def _row(snap: Snapshot, alert: AlertState, now: float) -> CreditRow:
    return CreditRow(
        client_id=snap.client_id,
        username=snap.username,
        balance=snap.balance,
        used=snap.used,
        credit_type=snap.credit_type.value,
        disabled=snap.disabled,
        rate_per_s=snap.rate_per_s,
        runway_s=snap.runway_s,
        level=alert.level.value,
        low=alert.level != Level.OK,
        alert_id=alert.alert_id if alert.open else None,
        read_at=snap.read_at,
        age_s=max(0.0, now - snap.read_at),
    )


def _runway_order(row: CreditRow) -> tuple[int, float, int, str]:
    """Shortest runway first; unknown/infinite runways after, by balance."""
    known = row.runway_s is not None
    return (0 if known else 1, row.runway_s or 0.0, row.balance, row.username)


def list_credits(
    client: redis.Redis,
    prefix: str,
    *,
    below: int | None = None,
    runway_below_s: float | None = None,
    now: float | None = None,
) -> list[CreditRow]:
    """Every snapshot, filtered (limited ones with a balance below `below`, runway below
    `runway_below_s`), sorted by runway (shortest first)."""
    store = CreditsStore(client, prefix)
    at = time.time() if now is None else now
    alerts = store.alerts()
    rows = [_row(s, alerts.get(name, AlertState()), at) for name, s in store.snapshots().items()]
    if below is not None:  # (an unlimited subaccount's balance means nothing)
        rows = [r for r in rows if r.balance < below and r.credit_type != "unlimited"]
    if runway_below_s is not None:
        rows = [r for r in rows if r.runway_s is not None and r.runway_s < runway_below_s]
    return sorted(rows, key=_runway_order)


def resolve_username(client: redis.Redis, prefix: str, client_or_username: str) -> str:
    """The username of a client id (from its recorded state), else the argument itself."""
    raw = client.get(keys.client(prefix, client_or_username))
    if raw:
        state = ClientState.model_validate_json(raw)
        if state.username:
            return state.username
    return client_or_username


def show_credits(
    client: redis.Redis,
    prefix: str,
    client_or_username: str,
    *,
    now: float | None = None,
    history: int = 50,
) -> CreditDetail | None:
    """One subaccount by client id or username; None if it has no snapshot."""
    store = CreditsStore(client, prefix)
    username = resolve_username(client, prefix, client_or_username)
    snap = store.snapshot(username)
    if snap is None:
        return None
    at = time.time() if now is None else now
    return CreditDetail(
        row=_row(snap, store.alert(username), at),
        history=store.history(username, history),
        alert_log=store.alert_log(username),
    )


def refresh(
    settings: Settings, client: redis.Redis, client_or_username: str | None = None
) -> RefreshResult:
    """Scan now: one subaccount here; all of them here under the lease, or, when a monitor
    holds it, by that monitor at its next tick (two processes never judge the same alerts)."""
    settings.require_api_key()
    monitor = build_monitor(settings, client)
    try:
        if client_or_username is not None:
            monitor.scanner.keep_alive = _no_lease_needed
            username = resolve_username(client, settings.key_prefix, client_or_username)
            report = monitor.scanner.refresh([username])
            return RefreshResult(scanned_here=True, requested=False, report=report)
        if monitor.lease.hold():
            try:
                report = monitor.scan_now()
                return RefreshResult(scanned_here=True, requested=False, report=report)
            except LeaseLost:
                pass  # a monitor took over meanwhile: it will scan
        request_scan(client, settings.key_prefix)
        return RefreshResult(scanned_here=False, requested=True)
    finally:
        monitor.lease.release()
        monitor.scanner.api.close()


def _no_lease_needed() -> None:
    """A one-subaccount refresh reads too little to need the lease."""


def client_rule(settings: Settings, client: redis.Redis, client_id: str) -> Thresholds:
    """The low-credit rule of one client: the settings' defaults with its own overrides."""
    overrides = CreditsStore(client, settings.key_prefix).rule_overrides().get(client_id)
    return with_overrides(thresholds_from(settings), overrides)


def set_client_rule(
    settings: Settings,
    client: redis.Redis,
    client_id: str,
    changes: dict[str, float],
    *,
    reset: bool = False,
) -> Thresholds:
    """Set some thresholds of one client (`RULE_FIELDS`), or `reset` it to the defaults; the
    rule now in force. It applies from the next scan."""
    unknown = set(changes) - set(RULE_FIELDS)
    if unknown:
        raise ConfigError(f"unknown rule fields {sorted(unknown)}; known: {list(RULE_FIELDS)}")
    store = CreditsStore(client, settings.key_prefix)
    current = {} if reset else store.rule_overrides().get(client_id, {})
    store.set_rule_override(client_id, {**current, **changes})
    return client_rule(settings, client, client_id)
