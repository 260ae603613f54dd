"""Closing a connection without any HTTP response bytes, which a route cannot do by itself.

`DropMiddleware` (pure ASGI, outermost inside Starlette's error middleware) finds the server's
transport and hands routes a `drop` callable through the scope's extensions. Under uvicorn the
`receive` callable is a bound method of the connection's RequestResponseCycle, which holds the
asyncio transport (true of uvicorn's h11, httptools and zttp implementations). Closing it before
`http.response.start` makes the client see "server disconnected without sending a response".
Elsewhere (no transport found) the fallback starts a response and aborts it mid-body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DROP_EXTENSION = "subaccount_worker.sandbox.drop"


def _transport_of(receive: Receive) -> asyncio.BaseTransport | None:
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    return transport if isinstance(transport, asyncio.BaseTransport) else None


class _Connection:
    """One request's connection: whether it was dropped, and how to drop it."""

    def __init__(self, receive: Receive) -> None:
        self.transport = _transport_of(receive)
        self.dropped = False

    def drop(self) -> None:
        """Close the connection now (or, without a transport, abort the response later)."""
        self.dropped = True
        if self.transport is not None:
            self.transport.close()


class DropMiddleware:
    """Lets routes drop their connection; swallows whatever they send afterwards."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request with `drop` in `scope["extensions"]`."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = _Connection(receive)
        extensions = dict(scope.get("extensions") or {})
        extensions[DROP_EXTENSION] = connection.drop
        scope = {**scope, "extensions": extensions}

        async def guarded_send(message: Message) -> None:
            if not connection.dropped:
                await send(message)

        await self.app(scope, receive, guarded_send)
        if connection.dropped:
            await _finish_drop(connection, send)


async def _finish_drop(connection: _Connection, send: Send) -> None:
    if connection.transport is not None:
        # Let the loop run connection_lost, so the server marks the cycle disconnected and
        # does not answer 500 for "returned without starting response".
        await asyncio.sleep(0)
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"64")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    raise ConnectionAbortedError("sandbox dropped the response (no transport to close)")


def drop_connection(scope: MutableMapping[str, Any]) -> None:
    """Close the client connection of the request with this scope, without any response."""
    drop: Callable[[], None] | None = (scope.get("extensions") or {}).get(DROP_EXTENSION)
    if drop is None:
        raise RuntimeError("DropMiddleware is not installed on this app")
    drop()
