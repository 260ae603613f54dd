"""The API's error answers as one exception, so state rules and routers fail the same way.

The messages are the real API's, as the v6 REST reference the project started from gives them
(summarised in docs/api.md), typos included; 409 is defined by the sandbox.
"""

from __future__ import annotations

UNAUTHORIZED = "Unauthorized"
FORBIDDEN = "You cannot use this feature"
INVALID = "Invalid Parameters"
NOT_FOUND = "Subaccount does not exists"  # sic, as the v6 reference spells it
ALREADY_EXISTS = "Subaccount already exists"  # defined by the sandbox
TOO_MANY_REQUESTS = "Too Many Requests"
SERVER_ERROR = "Server error"


class ApiFailure(Exception):
    """An error answer: HTTP status, the API's `error` string and an optional `detail`."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}" + (f": {detail}" if detail else ""))
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}


def invalid(detail: str) -> ApiFailure:
    """A 400 "Invalid Parameters" whose detail says which field is wrong and why."""
    return ApiFailure(400, INVALID, detail)


def not_found(username: str) -> ApiFailure:
    """A 404 for a username that names no subaccount."""
    return ApiFailure(404, NOT_FOUND, f"username: no subaccount {username!r}")
