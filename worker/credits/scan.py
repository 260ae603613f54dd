"""One scan: list every subaccount (paged), read its credit details, snapshot, judge, notify.

All calls go through the API client's limiter: the shared Redis token bucket every worker uses,
behind a local bucket holding the monitor to `monitor_rate_share` of the rate, so a scan of
thousands of subaccounts never starves event processing. A scan of N subaccounts therefore takes
about (N + N / page_size) / (rate x share) seconds. Reads are processed a page at a time: one
Redis round trip to read histories and alert states, one to write snapshots and alert changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from handlers.plan import ClientState
from handlers.requests import CreditType
from worker.api.client import SubaccountClient
from worker.api.models import CreditDetails, ListPage, Subaccount
from worker.api.rate_limit import RateLimiter
from worker.credits.drift import Drift, find_drift
from worker.credits.notify import Notification, NotificationType, Notifier, logged
from worker.credits.rule import (
    AlertState,
    Level,
    Reading,
    Thresholds,
    Transition,
    evaluate,
    with_overrides,
)
from worker.credits.runway import consumption_rate, runway_s
from worker.credits.store import CreditsStore, Snapshot, client_states
from worker.errors import ApiError, NotFound
from worker.log import get_logger

log = get_logger(__name__)
Clock = Callable[[], float]


class BothLimits:
    """Acquire from every limiter in order (the monitor's share first, then the shared bucket)."""

    def __init__(self, *limiters: RateLimiter) -> None:
        self._limiters = limiters

    def acquire(self) -> None:
        for limiter in self._limiters:
            limiter.acquire()


@dataclass
class ScanReport:
    """What one scan did: counts, timing, levels and the drift it found."""

    started_at: float
    finished_at: float = 0.0
    scanned: int = 0
    errors: int = 0
    below: dict[str, int] = field(default_factory=lambda: {"warning": 0, "critical": 0})
    total_balance: int = 0
    drift: list[Drift] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.finished_at - self.started_at


def _noop() -> None:
    return None


class Scanner:
    """Scans subaccounts through `api` into `store`, raising notifications through `notifier`."""

    def __init__(
        self,
        api: SubaccountClient,
        store: CreditsStore,
        notifier: Notifier,
        thresholds: Thresholds,
        *,
        page_size: int = 100,
        rate_window_s: float = 86_400.0,
        clock: Clock = time.time,
        keep_alive: Callable[[], None] = _noop,
        concurrency: int = 4,
        min_history_s: float = 0.0,
        min_samples: int = 2,
        digest_period_s: float | None = None,
    ) -> None:
        self.api = api
        self.store = store
        self.notifier = notifier
        self.thresholds = thresholds
        self.page_size = page_size
        self.rate_window_s = rate_window_s
        self.clock = clock
        self.keep_alive = keep_alive  # called between calls: the monitor renews its lease there
        self.concurrency = concurrency  # reads in flight: the limiter, not latency, sets the pace
        self.min_history_s = min_history_s  # a runway needs history spanning this long...
        self.min_samples = min_samples  # ...and this many readings
        self.digest_period_s = digest_period_s  # one digest of every low client per period

    def list_all(self) -> list[Subaccount]:
        return list_subaccounts(self.api, self.page_size, self.keep_alive)

    def scan(self) -> ScanReport:
        """A full scan: snapshots and alerts of every subaccount, and the drift."""
        report = ScanReport(started_at=self.clock())
        states = client_states(self.store.redis, self.store.prefix)
        listed = self.list_all()
        owners = _owners(states)
        for start in range(0, len(listed), self.page_size):
            chunk = [sub.username for sub in listed[start : start + self.page_size]]
            self._scan_chunk(chunk, owners, report)
        self._forget_gone({sub.username for sub in listed})
        report.drift = find_drift(states, {sub.username: sub for sub in listed})
        report.finished_at = self.clock()
        self._record(report)
        if self.digest_period_s is not None:
            send_digest(self.store, self.notifier, report.finished_at, self.digest_period_s)
        return report

    def refresh(self, usernames: list[str]) -> ScanReport:
        """Read only the given subaccounts now (e.g. `credits refresh CLIENT`)."""
        report = ScanReport(started_at=self.clock())
        owners = _owners(client_states(self.store.redis, self.store.prefix))
        self._scan_chunk(usernames, owners, report)
        report.finished_at = self.clock()
        return report

    def _scan_chunk(
        self, usernames: list[str], owners: Mapping[str, str], report: ScanReport
    ) -> None:
        read: list[tuple[CreditDetails, float]] = []
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="credits-read")
        try:
            for username, result in zip(usernames, pool.map(self._read, usernames), strict=True):
                if isinstance(result, ApiError):
                    report.errors += 1
                    log.warning("credits.read_failed", username=username, error=str(result))
                elif result is not None:
                    read.append(result)
                self.keep_alive()
        finally:  # on SIGTERM or a lost lease, the reads not started are dropped
            pool.shutdown(wait=True, cancel_futures=True)
        if read:
            self._judge(read, owners, report)

    def _read(self, username: str) -> tuple[CreditDetails, float] | ApiError | None:
        """One subaccount's credit details and when they were read (None: it is gone)."""
        try:
            return self.api.get_credit_details(username), self.clock()
        except NotFound:
            return None  # deleted between the list and the read: the next scan sees it gone
        except ApiError as exc:
            return exc

    def _judge(
        self, read: list[tuple[CreditDetails, float]], owners: Mapping[str, str], report: ScanReport
    ) -> None:
        names = [details.username for details, _at in read]
        rules = self.store.rule_overrides()
        histories = self.store.histories(names)
        alerts = self.store.alerts_of(names)
        pipe = self.store.redis.pipeline(transaction=True)  # alerts and their notifications
        notes: list[Notification] = []
        for details, at in read:
            snap = self._snapshot(details, at, owners.get(details.username), histories)
            rule = with_overrides(self.thresholds, rules.get(snap.client_id or ""))
            state, change = evaluate(snap.username, alerts[snap.username], _reading(snap), rule)
            self.store.add_snapshot(pipe, snap)
            self.store.set_alert(pipe, snap.username, state)
            if change is not None:
                self.store.log_alert(pipe, snap.username, _log_record(snap, change))
                if change.notify:
                    notes.append(credit_notification(snap, change))
                    self.notifier.add(pipe, notes[-1])
            _count(report, snap, state)
        self.store.execute(pipe)
        logged(notes)

    def _snapshot(
        self,
        details: CreditDetails,
        at: float,
        client_id: str | None,
        histories: Mapping[str, list[Snapshot]],
    ) -> Snapshot:
        base = Snapshot(
            username=details.username,
            client_id=client_id,
            balance=details.balance,
            used=details.used,
            credit_type=details.credit_type,
            disabled=details.disabled,
            read_at=at,
        )
        samples = [base.sample(), *(old.sample() for old in histories.get(base.username, []))]
        rate = consumption_rate(samples, self.rate_window_s, self.min_history_s, self.min_samples)
        unlimited = details.credit_type == CreditType.UNLIMITED
        runway = None if unlimited else runway_s(details.balance, rate)
        return base.model_copy(update={"rate_per_s": rate, "runway_s": runway})

    def _forget_gone(self, present: set[str]) -> None:
        gone = set(self.store.snapshots()) - present
        if gone:
            pipe = self.store.redis.pipeline(transaction=False)
            for username in gone:
                self.store.forget(pipe, username)
            self.store.execute(pipe)

    def _record(self, report: ScanReport) -> None:
        self.store.set_scan(
            {
                "started_at": report.started_at,
                "finished_at": report.finished_at,
                "duration_s": report.duration_s,
                "scanned": report.scanned,
                "errors": report.errors,
            }
        )


def send_digest(
    store: CreditsStore, notifier: Notifier, now: float, period_s: float
) -> Notification | None:
    """At most one `credits_digest` per `period_s`: every subaccount with an open low-credit
    alert, critical first, lowest balance first (none when nobody is low)."""
    marker = f"{store.prefix}:credits:digest"
    last: Any = store.redis.hget(marker, "digest_at")
    if last is not None and now - float(last) < period_s:
        return None
    snaps = store.snapshots()
    alerts = store.alerts_of(list(snaps))
    low = sorted(
        (
            {"username": name, "client_id": snap.client_id, "level": alerts[name].level.value,
             "balance": snap.balance, "runway_s": snap.runway_s}
            for name, snap in snaps.items()
            if alerts[name].open
        ),
        key=lambda row: (row["level"] != "critical", row["balance"]),
    )  # fmt: skip
    pipe = store.redis.pipeline(transaction=True)
    pipe.hset(marker, "digest_at", repr(now))  # when the last digest was due
    note = None
    if low:
        data = {"period_s": period_s, "count": len(low), "clients": low}
        note = Notification.make(NotificationType.CREDITS_DIGEST, now, data, repr(now))
        notifier.add(pipe, note)
    store.execute(pipe)
    if note:
        logged([note])
    return note


def list_subaccounts(
    api: SubaccountClient, page_size: int = 100, keep_alive: Callable[[], None] = _noop
) -> list[Subaccount]:
    """Every subaccount the API lists, page by page."""
    found: list[Subaccount] = []
    offset = 0
    while True:
        page = api.list_subaccounts(ListPage(limit=page_size, offset=offset))
        found.extend(page.subaccounts)
        offset += len(page.subaccounts)
        keep_alive()
        if not page.subaccounts or offset >= page.total:
            return found


def _owners(states: list[ClientState]) -> dict[str, str]:
    """Username → client id of every client that has a username."""
    return {s.username: s.client_id for s in states if s.username}


def _reading(snap: Snapshot) -> Reading:
    unlimited = snap.credit_type == CreditType.UNLIMITED
    return Reading(
        at=snap.read_at, balance=snap.balance, runway_s=snap.runway_s, unlimited=unlimited
    )


def _count(report: ScanReport, snap: Snapshot, state: AlertState) -> None:
    report.scanned += 1
    if snap.credit_type != CreditType.UNLIMITED:
        report.total_balance += snap.balance
    if state.level != Level.OK:
        report.below[state.level.value] += 1


def _log_record(snap: Snapshot, change: Transition) -> dict[str, Any]:
    return {
        "at": snap.read_at,
        "change": change.change,
        "alert_id": change.alert_id,
        "level": change.level.value,
        "balance": snap.balance,
        "runway_s": snap.runway_s,
        "notified": change.notify,
    }


def credit_notification(snap: Snapshot, change: Transition) -> Notification:
    """The `credits_low` / `credits_recovered` notification of an alert change."""
    kind = (
        NotificationType.CREDITS_RECOVERED
        if change.change == "cleared"
        else NotificationType.CREDITS_LOW
    )
    data = {
        "alert_id": change.alert_id,
        "change": change.change,
        "level": change.level.value,
        "client_id": snap.client_id,
        "username": snap.username,
        "balance": snap.balance,
        "used": snap.used,
        "runway_s": snap.runway_s,
        "read_at": snap.read_at,
    }
    parts = (change.alert_id, change.change, change.level.value, repr(snap.read_at))
    return Notification.make(kind, snap.read_at, data, *parts)
