"""The monitor's Prometheus metrics and its small HTTP server (`/metrics`, `/healthz`).

Gauges about the data are computed from Redis at scrape time, so a standby monitor reports the
same figures as the leader and a stale scan shows as a growing snapshot age, not as old values.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from handlers.requests import CreditType
from worker.credits.rule import Level
from worker.credits.store import CreditsStore


class MonitorMetrics:
    """The monitor's own registry: process figures plus the Redis-backed collector."""

    def __init__(
        self, store: CreditsStore, balance_gauges: bool, clock: Callable[[], float] = time.time
    ) -> None:
        self.registry = CollectorRegistry()
        self.leader = Gauge(
            "saw_credits_monitor_leader",
            "1 while this monitor holds the lease",
            registry=self.registry,
        )
        self.scans = Counter("saw_credits_scans", "Scans finished", registry=self.registry)
        self.scan_errors = Counter(
            "saw_credits_scan_read_errors",
            "Subaccount reads that failed during scans",
            registry=self.registry,
        )
        self.scanned = Gauge(
            "saw_credits_subaccounts_scanned",
            "Subaccounts read by the last scan",
            registry=self.registry,
        )
        self.duration = Gauge(
            "saw_credits_scan_duration_seconds", "Duration of the last scan", registry=self.registry
        )
        self.registry.register(CreditsCollector(store, balance_gauges, clock))


class CreditsCollector:
    """Snapshot age, subaccounts below threshold by level, credits remaining, drift by kind."""

    def __init__(
        self, store: CreditsStore, balance_gauges: bool, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._balances = balance_gauges
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            snapshots = self._store.snapshots()
            alerts = self._store.alerts()
            drift = self._store.open_drift()
        except redis.RedisError:
            return  # a scrape during an outage shows no credit gauges rather than failing
        now = self._clock()
        oldest = min((s.read_at for s in snapshots.values()), default=now)
        yield GaugeMetricFamily(
            "saw_credits_oldest_snapshot_age_seconds",
            "Age of the oldest subaccount snapshot",
            value=now - oldest,
        )
        limited = [s for s in snapshots.values() if s.credit_type != CreditType.UNLIMITED]
        yield GaugeMetricFamily(
            "saw_credits_remaining",
            "Credits left over limited subaccounts",
            value=sum(s.balance for s in limited),
        )
        below = GaugeMetricFamily(
            "saw_credits_subaccounts_below_threshold",
            "Subaccounts with an open low-credit alert",
            labels=["level"],
        )
        for level in (Level.WARNING, Level.CRITICAL):
            count = sum(1 for name, a in alerts.items() if a.level == level and name in snapshots)
            below.add_metric([level.value], count)
        yield below
        kinds = GaugeMetricFamily("saw_credits_drift", "Open drift items by kind", labels=["kind"])
        for kind in sorted({str(r.get("kind")) for r in drift.values()}):
            kinds.add_metric([kind], sum(1 for r in drift.values() if r.get("kind") == kind))
        yield kinds
        if self._balances:
            family = GaugeMetricFamily(
                "saw_credits_balance", "Balance of one subaccount", labels=["username"]
            )
            for snap in limited:
                family.add_metric([snap.username], snap.balance)
            yield family


class Health(Protocol):
    """The monitor's health (worker/credits/monitor.py: MonitorHealth)."""

    @property
    def alive(self) -> bool: ...
    @property
    def ok(self) -> bool: ...
    @property
    def status(self) -> str: ...


def serve(
    host: str, port: int, registry: CollectorRegistry, health: Callable[[], Health]
) -> ThreadingHTTPServer:
    """Serve `/metrics`, `/healthz` (the truth: 503 when Redis refuses us or scans stopped
    finishing; readiness and alerts) and `/livez` (the loop runs; liveness: restarting would
    not mend Redis) in a daemon thread; the caller shuts the server down."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                now = health()
                self._json(200 if now.ok else 503, now.status)
            elif self.path == "/livez":
                alive = health().alive
                self._json(200 if alive else 503, "alive" if alive else "stalled")
            else:
                self._answer(404, b"not found", "text/plain")

        def _json(self, code: int, status: str) -> None:
            self._answer(code, json.dumps({"status": status}).encode(), "application/json")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None  # scrapes every few seconds would drown the logs

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="monitor-http", daemon=True).start()
    return server
