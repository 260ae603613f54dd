"""Serving the ingress under uvicorn with limits, so slow clients cannot hold it forever.

    request head   `ingress_header_timeout_s` from connecting (or from the previous response on
                   a kept-alive connection) to a complete request line and headers, else 408 and
                   the connection is closed. uvicorn has no such option, so `HeadDeadlineH11`
                   (uvicorn's h11 protocol plus one timer per connection) keeps it.
    request body   `ingress_body_timeout_s` to read a whole body, else 408 (`body.read_body`,
                   where the size limit is kept too: every route reads its body there).
    idle           `ingress_keep_alive_s` between requests on a kept-alive connection
                   (uvicorn's `timeout_keep_alive`).
    connections    `ingress_max_connections` at once; beyond it uvicorn answers 503
                   (`limit_concurrency`).

`/metrics` is served on `ingress_metrics_port` by a small server of its own (prometheus_client's,
in a daemon thread), apart from the public routes, when that port is set (deploy/ sets 9193).

A stalled client costs one idle socket for at most those timeouts; the event loop never waits on
it, so `/healthz` keeps answering. A head timeout closes gently: the 408 is sent with a FIN and
what the client still sends is discarded for LINGER_S before the socket is closed, so the client
reads the 408 rather than a reset.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, start_http_server
from uvicorn.protocols.http.h11_impl import H11Protocol

from worker.errors import ConfigError
from worker.ingress.problems import RequestTimeout
from worker.settings import Settings

LINGER_S = 1.0


class IngressServerConfig(uvicorn.Config):
    """uvicorn's config plus the request-head deadline our protocol reads."""

    def __init__(self, app: Any, *, head_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.head_timeout_s = head_timeout_s


class HeadDeadlineH11(H11Protocol):
    """h11 protocol that answers 408 and closes a connection whose request head is too slow."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._head_timeout_s: float = getattr(config, "head_timeout_s", 10.0)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._closing_slowly = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        if not self._closing_slowly:  # after a 408 for a slow head, input is discarded
            super().data_received(data)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request head was received: its deadline is met
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._arm_head_deadline()  # the next request's head (a pipelined one disarms it)
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self._head_timeout_s, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        """408 in the ingress's JSON shape, written raw (h11 has no request to answer yet)."""
        self._head_deadline = None
        if self.transport.is_closing():
            return
        reason = f"headers: not received within {self._head_timeout_s:g} s"
        body = RequestTimeout([reason]).response().body
        head = (
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + bytes(body))
        self._closing_slowly = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)


def server_config(app: Any, settings: Settings, host: str, port: int) -> IngressServerConfig:
    """The uvicorn config of the ingress: our protocol and every limit from settings."""
    return IngressServerConfig(
        app,
        head_timeout_s=settings.ingress_header_timeout_s,
        host=host,
        port=port,
        http=HeadDeadlineH11,
        timeout_keep_alive=settings.ingress_keep_alive_s,
        limit_concurrency=settings.ingress_max_connections,
        log_config=None,
        access_log=False,
        server_header=False,
    )


def start_metrics_server(settings: Settings, host: str, registry: CollectorRegistry) -> None:
    """Serve the registry on `ingress_metrics_port` (every path answers the exposition)."""
    try:
        start_http_server(settings.ingress_metrics_port, addr=host, registry=registry)
    except OSError as exc:
        port = settings.ingress_metrics_port
        raise ConfigError(f"ingress metrics port {port} cannot be bound: {exc}") from None
