"""Bearer tokens of `POST /events`: several may be configured at once, so they can be rotated."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from pydantic import SecretStr
from starlette.datastructures import Headers

from worker.ingress.problems import Unauthorized

SOURCE = "events"
CHALLENGE = 'Bearer realm="subaccount-worker"'


class BearerTokens:
    """Checks `Authorization: Bearer <token>` against every configured token in constant time."""

    def __init__(self, tokens: Sequence[SecretStr]) -> None:
        self._tokens = [t.get_secret_value().encode() for t in tokens if t.get_secret_value()]

    @property
    def configured(self) -> bool:
        """Whether any token is configured (without one, every request is refused)."""
        return bool(self._tokens)

    def check(self, headers: Headers) -> None:
        """Return if the request carries a configured token; raise Unauthorized otherwise."""
        scheme, _, presented = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthorized(SOURCE, "no bearer token", CHALLENGE)
        candidate = presented.strip().encode("latin-1")
        matched = False
        for token in self._tokens:  # no early exit: the time taken says nothing about which
            matched |= hmac.compare_digest(candidate, token)
        if not matched:
            raise Unauthorized(SOURCE, "unknown bearer token", CHALLENGE)
