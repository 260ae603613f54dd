"""Where an outgoing webhook (the credit notifications) may point: https only, no userinfo, and
never inward (private, loopback, link-local, cloud metadata, ...) unless a CIDR allows it.

Checked twice: the URL's shape when the settings load (`check_shape`), and the addresses its
host resolves to at start and before every delivery (`resolve`), so a DNS change cannot point it
inward later. The delivery then connects to the address that passed the check (`pinned`), with
the host name kept for the Host header and TLS (SNI and the certificate check), so a second,
different DNS answer cannot slip in between the check and the connection.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from worker.errors import ConfigError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., list[Any]]  # socket.getaddrinfo's shape


_HTTP_ONLY_LOOPBACK = (
    "{name}: http:// is allowed only to loopback with"
    " SUBACCOUNT_WORKER_NOTIFY_ALLOW_HTTP_LOOPBACK=true; use https://"
)


class UrlRefused(ConfigError):
    """The URL (or an address its host resolves to) is outside the policy."""


class Unresolved(UrlRefused):
    """The URL's host did not resolve (now): nothing was sent; try again later."""


@dataclass(frozen=True)
class UrlPolicy:
    """What the settings allow: http to loopback (explicitly), and inward CIDRs."""

    allow_http_loopback: bool = False
    allowed: tuple[Network, ...] = ()

    @classmethod
    def of(cls, allow_http_loopback: bool, cidrs: Iterable[str]) -> UrlPolicy:
        return cls(allow_http_loopback, tuple(ipaddress.ip_network(c, strict=False) for c in cidrs))

    def check_shape(self, url: str, name: str) -> SplitResult:
        """The URL's scheme, userinfo and (for an address literal) address; else UrlRefused."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme not in ("https", "http") or not host:
            raise UrlRefused(f"{name}: must be an https:// URL (got scheme {parts.scheme!r})")
        if parts.username is not None or parts.password is not None:
            raise UrlRefused(f"{name}: no user:password@ in the URL (use the signing secret)")
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise UrlRefused(f"{name}: bad port") from None
        literal = _literal(host)
        if parts.scheme == "http":
            # A name passes here; `resolve` then requires every address it has to be loopback.
            inward = literal is None or literal.is_loopback
            if not (self.allow_http_loopback and inward):
                raise UrlRefused(_HTTP_ONLY_LOOPBACK.format(name=name))
        if literal is not None:
            self.check_address(literal, name)
        return parts

    def check_address(self, address: Address, name: str) -> None:
        """Refuse an address that is not public, unless a CIDR allows it (or it is loopback
        with http-to-loopback allowed)."""
        if any(address in net for net in self.allowed):
            return
        if address.is_loopback and self.allow_http_loopback:
            return
        mapped = getattr(address, "ipv4_mapped", None)
        inward = not address.is_global or address.is_multicast
        if inward or (mapped is not None and not mapped.is_global):
            raise UrlRefused(
                f"{name}: {address} is not a public address (private, loopback, link-local or"
                " metadata); allow its range in SUBACCOUNT_WORKER_NOTIFY_ALLOWED_CIDRS if meant"
            )

    def resolve(self, url: str, name: str, resolver: Resolver = socket.getaddrinfo) -> Address:
        """The first address the URL's host resolves to, after checking every one of them."""
        parts = self.check_shape(url, name)
        host = parts.hostname or ""
        literal = _literal(host)
        if literal is not None:
            return literal
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            answers = resolver(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Unresolved(f"{name}: {host} does not resolve ({exc})") from None
        found = [ipaddress.ip_address(str(a[4][0]).split("%")[0]) for a in answers]
        if not found:
            raise Unresolved(f"{name}: {host} resolves to no address")
        for address in found:
            self.check_address(address, name)
            if parts.scheme == "http" and not address.is_loopback:
                raise UrlRefused(_HTTP_ONLY_LOOPBACK.format(name=name))
        return found[0]


def pinned(url: str, address: Address) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL to `address` itself, the Host header and the httpx extensions (TLS server name)
    that keep the request naming the original host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    shown = f"[{address}]" if address.version == 6 else str(address)
    netloc = shown + (f":{parts.port}" if parts.port else "")
    target = urlunsplit(parts._replace(netloc=netloc))
    host_header = parts.netloc.rpartition("@")[2]
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return target, {"host": host_header}, extensions


def masked(url: str) -> str:
    """`url` for logs and `check-config`: userinfo and every query value replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = urlencode([(k, "***") for k, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=""))


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
