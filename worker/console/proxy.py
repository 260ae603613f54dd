"""The console's front door: the Host check (against DNS rebinding) and who the peer really is.

Every request's Host must be one of `console_allowed_hosts` (`/healthz` excepted: a kubelet's
probe names the pod's IP), else 400. The address the connection comes from is kept in
`scope["state"]["peer"]`; only when it is one of `console_trusted_proxies` (loopback when none
are set) are `X-Forwarded-For` and `X-Forwarded-Proto` believed, and `state["from_proxy"]` says
whether the trusted user header may be read at all. Serve with uvicorn's own proxy handling off
(`app.run` does), so nobody but this class rewrites the client address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from worker.settings import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
UNCHECKED_PATHS = {"/healthz"}


def networks(entries: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(e, strict=False) for e in entries]


def address_in(address: str, nets: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in nets)


def host_allowed(host_header: str, allowed: list[str]) -> bool:
    """Whether a Host header (with or without port, IPv6 in brackets) is an allowed name."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    host = host.rstrip(".")
    for entry in allowed:
        name = entry.strip().lower()
        if name == "*" or host == name or (name.startswith(".") and host.endswith(name)):
            return True
    return False


class ProxyGate:
    """ASGI middleware: Host check, real peer, X-Forwarded-* from trusted proxies only."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.allowed_hosts = list(settings.console_allowed_hosts)
        self.proxies = networks(settings.console_trusted_proxies)
        self.forwarders = self.proxies or LOOPBACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if scope.get("path") not in UNCHECKED_PATHS and not host_allowed(
            headers.get("host", ""), self.allowed_hosts
        ):
            await _bad_host(send)
            return
        peer = (scope.get("client") or ("", 0))[0]
        scope = dict(scope)
        state = dict(scope.get("state") or {})
        state["peer"] = peer
        state["from_proxy"] = bool(self.proxies) and address_in(peer, self.proxies)
        if address_in(peer, self.forwarders):
            scope.update(self._forwarded(headers, scope))
        scope["state"] = state
        await self.app(scope, receive, send)

    def _forwarded(self, headers: dict[str, str], scope: Scope) -> dict[str, object]:
        """Scheme and client address as the trusted proxy reports them."""
        changes: dict[str, object] = {}
        proto = headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
        if proto in ("http", "https"):
            changes["scheme"] = proto
        hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
        for hop in reversed(hops):  # the nearest hop not itself a trusted proxy is the client
            if not address_in(hop, self.forwarders):
                changes["client"] = (hop, 0)
                break
        return changes


async def _bad_host(send: Send) -> None:
    body = b"unknown Host: set SUBACCOUNT_WORKER_CONSOLE_ALLOWED_HOSTS to the console's name\n"
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
