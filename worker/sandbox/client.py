"""`SandboxAdmin`: a small synchronous client of the sandbox's admin routes, for tests and demos."""

from __future__ import annotations

from types import TracebackType
from typing import Any, cast

import httpx


class SandboxAdminError(RuntimeError):
    """An admin route answered outside 2xx; the message has the method, path, status and body."""


class SandboxAdmin:
    """Reset, read the journal, set faults, state and sending of a sandbox at `base_url`."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, f"/_sandbox{path}", **kwargs)
        if not response.is_success:
            raise SandboxAdminError(
                f"{method} /_sandbox{path} answered {response.status_code}: {response.text}"
            )
        return response.json()

    def reset(self) -> None:
        """Empty state and journal; faults and master back to the start configuration."""
        self._call("POST", "/reset")

    def journal(
        self,
        operation: str | None = None,
        username: str | None = None,
        since_seq: int | None = None,
    ) -> list[dict[str, Any]]:
        """Journal entries in order, optionally filtered."""
        params = {"operation": operation, "username": username, "since_seq": since_seq}
        query = {k: v for k, v in params.items() if v is not None}
        return cast(list[dict[str, Any]], self._call("GET", "/journal", params=query))

    def faults(self) -> dict[str, Any]:
        """The live fault configuration."""
        return cast(dict[str, Any], self._call("GET", "/faults"))

    def set_faults(self, config: dict[str, Any]) -> dict[str, Any]:
        """Replace the fault configuration; the new one as the sandbox holds it."""
        return cast(dict[str, Any], self._call("PUT", "/faults", json=config))

    def state(self) -> dict[str, Any]:
        """Master account and subaccounts."""
        return cast(dict[str, Any], self._call("GET", "/state"))

    def set_state(self, patch: dict[str, Any]) -> dict[str, Any]:
        """Set master fields and upsert subaccounts directly; the new state."""
        return cast(dict[str, Any], self._call("PUT", "/state", json=patch))

    def set_sending(self, emails_per_s: float, seed: int | None = None) -> dict[str, Any]:
        """Make subaccounts send `emails_per_s` in total (0 stops); the sending status."""
        body = {"emails_per_s": emails_per_s, "seed": seed}
        return cast(dict[str, Any], self._call("PUT", "/sending", json=body))

    def sending(self) -> dict[str, Any]:
        """Rate, seed, emails sent and refused so far."""
        return cast(dict[str, Any], self._call("GET", "/sending"))

    def top_up(self, username: str, amount: int | None = None, after_ms: int = 0) -> dict[str, Any]:
        """Change a subaccount's credits out of band (omitted amount: its recurring amount),
        now or `after_ms` from now."""
        body = {"username": username, "amount": amount, "after_ms": after_ms}
        return cast(dict[str, Any], self._call("POST", "/top_up", json=body))

    def health(self) -> bool:
        """Whether the sandbox answers its health check."""
        try:
            return bool(self._call("GET", "/health").get("status") == "ok")
        except (httpx.HTTPError, SandboxAdminError):
            return False

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> SandboxAdmin:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
