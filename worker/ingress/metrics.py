"""Prometheus metrics of one ingress app, in a registry of its own (several apps, no collisions).

saw_ingress_requests_total{route, status}   every answer, 404s as route="other"
saw_ingress_enqueue_seconds{route}          time to enqueue an accepted request
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker import tracing

CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER_ROUTE = "other"
ENQUEUE_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class IngressMetrics:
    """The ingress's counters and histograms, registered in their own CollectorRegistry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "saw_ingress_requests",
            "HTTP requests answered by the ingress, by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.enqueue_seconds = Histogram(
            "saw_ingress_enqueue_seconds",
            "Time to enqueue the events of one accepted request on Redis.",
            ["route"],
            buckets=ENQUEUE_BUCKETS_S,
            registry=self.registry,
        )

    def observe_enqueue(self, route: str, started: float) -> None:
        """Record an enqueue that began at `started` (time.perf_counter)."""
        self.enqueue_seconds.labels(route=route).observe(time.perf_counter() - started)

    def exposition(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


class RequestCounter:
    """ASGI middleware counting every HTTP answer by route and status; with tracing on, each
    request is also a server span, continuing the caller's W3C `traceparent` if it sent one."""

    def __init__(self, app: ASGIApp, metrics: IngressMetrics, routes: Iterable[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else OTHER_ROUTE
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if tracing.enabled():
                await self._traced(scope, route, receive, counting_send, lambda: status)
            else:
                await self.app(scope, receive, counting_send)
        finally:
            self.metrics.requests.labels(route=route, status=str(status)).inc()

    async def _traced(
        self, scope: Scope, route: str, receive: Receive, send: Send, status: Callable[[], int]
    ) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        attributes = {"http.request.method": scope["method"], "http.route": route}
        parent = tracing.carrier_from(headers) or None
        with tracing.span(f"{scope['method']} {route}", attributes, kind="server", parent=parent):
            try:
                await self.app(scope, receive, send)
            finally:
                tracing.set_attributes({"http.response.status_code": status()})
