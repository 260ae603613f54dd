"""`subaccount-worker monitor`: one elected process scans every subaccount at a bounded rate.

Each tick (a few per lease period) takes or renews the lease; the leader scans when the interval
has passed since the last scan (by any monitor: the figures are in Redis) or when `credits
refresh` asked for one, then notes the drift. The standby ticks too, so it takes over within a
lease period of the leader's death. SIGTERM stops the loop between two API calls and releases
the lease.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from worker import keys
from worker.api.client import SubaccountClient, build_http_session, build_rate_limiter
from worker.api.rate_limit import TokenBucket, Unlimited
from worker.credits import reconcile
from worker.credits.lease import Lease, LeaseLost
from worker.credits.metrics import MonitorMetrics
from worker.credits.notify import Notifier, check_notify_settings
from worker.credits.rule import Thresholds
from worker.credits.scan import BothLimits, Scanner, ScanReport
from worker.credits.store import CreditsStore
from worker.errors import ApiError, BrokerUnavailable
from worker.log import get_logger
from worker.settings import Settings

log = get_logger(__name__)


# /healthz fails once no scan (by any monitor) has finished for this many scan intervals.
SCAN_STALE_INTERVALS = 3


class MonitorHealth:
    """What the monitor's HTTP server answers: `/livez` from `alive` (no Redis call), `/healthz`
    from `status`, read from Redis once, on first use."""

    def __init__(self, alive: bool, check: Callable[[], str]) -> None:
        self.alive = alive
        self._check = check

    @functools.cached_property
    def status(self) -> str:
        """ok | stalled | redis_unreachable | no_recent_scan"""
        return self._check() if self.alive else "stalled"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Stopping(Exception):
    """SIGTERM arrived during a scan: stop between two calls."""


def thresholds_from(settings: Settings) -> Thresholds:
    """The default low-credit rule of every client, from settings."""
    return Thresholds(
        warn_balance=settings.credits_warn_balance,
        critical_balance=settings.credits_critical_balance,
        warn_runway_s=settings.credits_warn_runway_s,
        critical_runway_s=settings.credits_critical_runway_s,
        clear_ratio=settings.credits_clear_ratio,
        clear_after_s=settings.credits_clear_after_s,
        period_s=settings.credits_alert_period_s,
    )


def monitor_client(
    settings: Settings, client: redis.Redis, observer: Any = None
) -> SubaccountClient:
    """An API client behind the shared limiter and, before it, the monitor's share of the rate."""
    shared = build_rate_limiter(settings, client)
    rps = settings.api_rate_limit_rps * settings.monitor_rate_share
    own = TokenBucket(rps, max(1, int(rps))) if rps > 0 else Unlimited()
    return SubaccountClient(
        build_http_session(settings),
        api_key=settings.api_key.get_secret_value(),
        surface=settings.api_surface,
        limiter=BothLimits(own, shared),
        observer=observer,
    )


@dataclass
class Monitor:
    """The scan loop of one monitor process (the leader scans, a standby waits its turn)."""

    scanner: Scanner
    lease: Lease
    interval_s: float
    clock: Callable[[], float] = time.time
    metrics: MonitorMetrics | None = None
    last_tick: float = 0.0
    leader: bool = False
    api_seen: bool = False  # a scan has succeeded (the API answered)
    api_waiting: bool = False  # "waiting for the API" was said

    def __post_init__(self) -> None:
        self.stop_event = threading.Event()
        self.started_at = self.clock()
        self._renewed = 0.0
        self.scanner.keep_alive = self._keep_alive

    @property
    def tick_s(self) -> float:
        """How often the loop wakes: a third of the lease, at most the scan interval."""
        return min(self.lease.ttl_ms / 3000, self.interval_s)

    def tick(self) -> ScanReport | None:
        """Take or renew the lease; scan if due. The report of a scan, else None."""
        self.last_tick = self.clock()
        self.leader = self.lease.hold()
        if self.metrics:
            self.metrics.leader.set(1 if self.leader else 0)
        if not self.leader or not self._due():
            return None
        return self.scan_now()

    def scan_now(self) -> ScanReport:
        """Scan (the caller holds the lease), note the drift, update the metrics."""
        self._renewed = time.monotonic()
        report = self.scanner.scan()
        reconcile.note_drift(
            self.scanner.store, self.scanner.notifier, report.drift, report.finished_at
        )
        self._observe(report)
        log.info(
            "credits.scanned",
            scanned=report.scanned,
            errors=report.errors,
            duration_s=round(report.duration_s, 3),
            drift=len(report.drift),
        )
        return report

    def _due(self) -> bool:
        figures = self.scanner.store.scan_figures()
        started = float(figures.get("started_at", 0) or 0)
        requested = float(figures.get("requested_at", 0) or 0)
        return requested > started or self.clock() - started >= self.interval_s

    def _keep_alive(self) -> None:
        if self.stop_event.is_set():
            raise Stopping()
        if time.monotonic() - self._renewed >= self.tick_s:
            if not self.lease.hold():
                raise LeaseLost()
            self._renewed = time.monotonic()
            self.last_tick = self.clock()

    def _observe(self, report: ScanReport) -> None:
        if self.metrics is None:
            return
        self.metrics.scans.inc()
        self.metrics.scan_errors.inc(report.errors)
        self.metrics.scanned.set(report.scanned)
        self.metrics.duration.set(report.duration_s)

    def alive(self) -> bool:
        """The loop is alive: it ticked within three tick periods (a long scan renews it)."""
        return self.clock() - self.last_tick <= 3 * self.tick_s + 5

    def healthy(self) -> MonitorHealth:
        """The truth for `/healthz`: the loop ticks, Redis answers us (our credentials work), and
        a scan (by whichever monitor leads) finished within SCAN_STALE_INTERVALS intervals
        (counted from this process's start until the first one)."""
        return MonitorHealth(self.alive(), self._scan_health)

    def _scan_health(self) -> str:
        try:
            figures = self.scanner.store.scan_figures()
        except redis.RedisError:
            return "redis_unreachable"
        finished = max(float(figures.get("finished_at", 0) or 0), self.started_at)
        if self.clock() - finished > SCAN_STALE_INTERVALS * self.interval_s:
            return "no_recent_scan"
        return "ok"

    def run(self) -> None:
        """Tick until `stop_event` is set; then release the lease."""
        try:
            while not self.stop_event.is_set():
                self.tick_once()
                self.stop_event.wait(self.tick_s)
        finally:
            self.lease.release()

    def tick_once(self) -> None:
        """One tick, its failure logged. Until a first scan succeeds, an API that does not
        answer yet (a monitor started before it) is said once at INFO, not as a failed tick."""
        try:
            if self.tick() is not None:
                self.api_seen = True
        except (Stopping, LeaseLost) as exc:
            log.info("credits.scan_interrupted", why=type(exc).__name__)
        except ApiError as exc:
            if self.api_seen:
                log.warning("credits.tick_failed", error=str(exc))
            elif not self.api_waiting:
                self.api_waiting = True
                log.info("credits.waiting_for_api", error=str(exc))
        except (BrokerUnavailable, redis.RedisError) as exc:
            log.warning("credits.tick_failed", error=str(exc))


def request_scan(client: redis.Redis, prefix: str) -> None:
    """Ask the running monitor to scan at its next tick (what `credits refresh` does)."""
    client.hset(keys.credit_scan(prefix), "requested_at", repr(time.time()))


def build_monitor(
    settings: Settings,
    client: redis.Redis,
    clock: Callable[[], float] = time.time,
) -> Monitor:
    """A monitor wired from settings (the CLI's and the tests' door; tests bring a clock)."""
    check_notify_settings(settings)
    store = CreditsStore(
        client,
        settings.key_prefix,
        history_maxlen=settings.monitor_history_maxlen,
        alert_log_maxlen=settings.credits_history_maxlen,
    )
    scanner = Scanner(
        monitor_client(settings, client),
        store,
        Notifier(client, settings),
        thresholds_from(settings),
        page_size=settings.monitor_page_size,
        rate_window_s=settings.monitor_rate_window_s,
        clock=clock,
        concurrency=settings.monitor_concurrency,
        min_history_s=settings.monitor_runway_min_history_s,
        min_samples=settings.monitor_runway_min_samples,
        digest_period_s=settings.credits_digest_period_s,
    )
    lease = Lease(client, keys.credit_lease(settings.key_prefix), settings.monitor_lease_ttl_ms)
    metrics = MonitorMetrics(store, settings.monitor_balance_gauges, clock)
    return Monitor(scanner, lease, settings.monitor_interval_s, clock=clock, metrics=metrics)
