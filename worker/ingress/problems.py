"""The ingress's refusals: one exception per HTTP answer, all rendered as one JSON shape.

Every refusal is `{"error": "<code>", "reasons": ["field: why", ...]}`. A route raises the
`Problem` that fits; the app's exception handler renders it, so no route builds an error body.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from starlette.responses import Response

from worker.errors import SubaccountWorkerError

MAX_REASONS = 50  # a batch of bad events could name thousands; the first fifty say enough
RETRY_AFTER_S = 5
UNAUTHORIZED_REASON = "missing or invalid credentials"


class JsonResponse(Response):
    """A JSON response escaped to ASCII, so no input string (even a lone surrogate) can fail it."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class Problem(SubaccountWorkerError):
    """A request the ingress refuses: `status`, a stable `code` and reasons naming fields."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "malformed"

    def __init__(self, reasons: list[str], headers: dict[str, str] | None = None) -> None:
        self.reasons = reasons
        self.headers = headers or {}
        super().__init__(f"{self.code}: " + "; ".join(reasons[:3]))

    def public_reasons(self) -> list[str]:
        """The reasons the client may see, capped at MAX_REASONS."""
        if len(self.reasons) <= MAX_REASONS:
            return self.reasons
        hidden = len(self.reasons) - MAX_REASONS
        return [*self.reasons[:MAX_REASONS], f"... and {hidden} more"]

    def response(self) -> JsonResponse:
        """The HTTP answer for this refusal."""
        body = {"error": self.code, "reasons": self.public_reasons()}
        return JsonResponse(body, status_code=self.status, headers=self.headers)


class Malformed(Problem):
    """400: the body or a header is not what the route accepts; reasons name each field."""


class Unauthorized(Problem):
    """401: a token or signature is missing or wrong; the body is fixed, `why` is only logged."""

    status = 401
    code = "unauthorized"

    def __init__(self, source: str, why: str, challenge: str | None = None) -> None:
        self.source = source
        self.why = why
        headers = {"WWW-Authenticate": challenge} if challenge else None
        super().__init__([UNAUTHORIZED_REASON], headers=headers)


class NotFound(Problem):
    """404: no such route."""

    status = 404
    code = "not_found"


class MethodNotAllowed(Problem):
    """405: the route exists but not with this method."""

    status = 405
    code = "method_not_allowed"


class TooLarge(Problem):
    """413: the body is over `ingress_max_body_bytes`."""

    status = 413
    code = "too_large"


class RequestTimeout(Problem):
    """408: the request's head or body did not arrive in time; the connection is closed."""

    status = 408
    code = "timeout"

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(reasons, headers={"Connection": "close"})


class UnsupportedMediaType(Problem):
    """415: the Content-Type is not one the route reads."""

    status = 415
    code = "unsupported_media_type"


class Unmappable(Problem):
    """422: valid JSON that maps to no catalogue event (unknown type, no client id, no credits)."""

    status = 422
    code = "unmappable"


class Unavailable(Problem):
    """503: Redis is unreachable; nothing was enqueued, retry after `Retry-After` seconds."""

    status = 503
    code = "unavailable"

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(reasons, headers={"Retry-After": str(RETRY_AFTER_S)})


class Internal(Problem):
    """500: a bug; no input should reach it (the fuzz test guards that)."""

    status = 500
    code = "internal"
