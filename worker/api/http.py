"""The HTTP layer under the API client: one pooled httpx transport and lean requests.

`httpx.Client` adds to every request what this client never uses: a cookie jar it parses each
response into, redirect and auth flows, URL merging, event hooks. Measured on loopback that is
about 40 % of a call's CPU (530 µs vs 320 µs a create), and the worker spends its CPU per event
mostly here. So `HttpSession` builds each `httpx.Request` itself (absolute URL, headers made
once) and hands it to an `httpx.HTTPTransport`: the same connection pool, keep-alive, timeouts
and httpx exception types, without the layers above. Redirects are not followed (an API answer
that redirects is an error to see, not to chase).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import httpx

USER_AGENT = "subaccount-worker/0.1"


class HttpSession:
    """Sends requests relative to `base_url` through one pooled transport; thread-safe."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: httpx.Timeout,
        max_connections: int = 16,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._transport = transport or httpx.HTTPTransport(
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            )
        )
        self._extensions = {"timeout": timeout.as_dict()}
        self._headers: dict[str, str] = {"User-Agent": USER_AGENT, "Accept": "application/json"}
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
        response = self._transport.handle_request(request)
        response.request = request
        try:
            response.read()
        finally:
            response.close()
        return response

    def close(self) -> None:
        self._transport.close()
