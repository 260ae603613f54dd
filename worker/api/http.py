"""The HTTP layer under the API client: httpx transports, one per worker thread, and lean requests.

Two measured costs of the plain `httpx.Client` are avoided, keeping httpx's connection handling,
timeouts and exception types:
- the layers above the transport (a cookie jar parsed from every response, redirect and auth
  flows, URL merging, event hooks): about 40 % of a call's CPU on loopback. `HttpSession` builds
  each `httpx.Request` itself (absolute URL, headers made once) and hands it to the transport.
- one connection pool shared by all threads: httpcore scans every connection of the pool, under
  its lock, twice per request (encode/httpcore#1035), which at 64 threads was about 45 % of the
  worker's CPU. Each thread gets its own transport with one keep-alive connection instead; a
  thread makes one call at a time, so it never waits for a connection.
What `httpx.Client` did and this keeps: proxies from the environment (`HTTPS_PROXY`,
`HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, resolved once for the API's host), certificate checks (one
SSL context shared by the threads), `Accept-Encoding: gzip, deflate`, errors carrying their
request. What it drops: cookies, `response.elapsed`, and redirects, which are not followed (an
API answer that redirects is an error to see, not to chase).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from worker.per_thread import PerThread

USER_AGENT = "subaccount-worker/0.1"
_ONE_CONNECTION = httpx.Limits(max_connections=1, max_keepalive_connections=1)


class HttpSession:
    """Sends requests relative to `base_url`; thread-safe.

    Without `transport`, each calling thread gets its own `httpx.HTTPTransport` (one keep-alive
    connection); a given `transport` (tests pass `httpx.MockTransport`) is shared by all.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: httpx.Timeout,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._shared = transport
        ssl_context, proxy = httpx.create_ssl_context(), proxy_for(base_url)
        self._transports: PerThread[httpx.BaseTransport] = PerThread(
            lambda: httpx.HTTPTransport(verify=ssl_context, proxy=proxy, limits=_ONE_CONNECTION),
            lambda t: t.close(),
        )
        self._extensions = {"timeout": timeout.as_dict()}
        self._headers: dict[str, str] = {
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
        }
        self._json_headers = {**self._headers, "Content-Type": "application/json"}

    def set_headers(self, headers: dict[str, str]) -> None:
        """Add headers sent with every request (the API key); set once, before use."""
        self._headers.update(headers)
        self._json_headers.update(headers)

    def send(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        """Send one request and return the answer, read in full; raises `httpx.HTTPError`."""
        url = f"{self._base}{path}?{urlencode(params)}" if params else self._base + path
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = self._headers if content is None else self._json_headers
        request = httpx.Request(
            method, url, headers=headers, content=content, extensions=self._extensions
        )
        transport = self._shared or self._transports.get()
        try:
            response = transport.handle_request(request)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        response.request = request
        try:
            response.read()
        finally:
            response.close()
        return response

    def close(self) -> None:
        if self._shared is not None:
            self._shared.close()
        self._transports.close_all()


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url`, or None (also when NO_PROXY covers its host)."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")
