"""CRM webhooks: verify them per the Standard Webhooks spec, then map onto the catalogue.

Verification (https://www.standardwebhooks.com): headers `webhook-id`, `webhook-timestamp` (unix
seconds) and `webhook-signature` (space-separated `v1,<base64>`); the signature is HMAC-SHA256
keyed with the base64-decoded secret (`whsec_<base64>`) over `<id>.<timestamp>.<raw body>`. Any
configured secret may match (rotation: old and new both valid), and the timestamp must be within
five minutes of now, either way. This is the `standardwebhooks` package's scheme, re-implemented
so a malformed header is a clean 401 rather than an exception, and the body is parsed only once.

Body: `{"type": ..., "client_id": ..., "occurred_at": RFC 3339, "data": {...}}` with `data` as in
the catalogue. It maps to the catalogue event of the same type (five types; the CRM may not send
invoice.paid or plan.changed): id = `webhook-id`, source `urn:subaccount-worker:crm`,
subject = `client_id`, time = `occurred_at`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from pydantic import SecretStr
from starlette.datastructures import Headers

from handlers.events import EventType
from worker.errors import ConfigError
from worker.ingress import sources
from worker.ingress.mapping import envelope
from worker.ingress.problems import Malformed, Unauthorized, Unmappable

SOURCE = sources.CRM
LOG_SOURCE = "crm"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix every Standard Webhooks secret carries)
TOLERANCE_S = 300  # fixed by the Standard Webhooks spec
TYPES = (
    EventType.ONBOARDED,
    EventType.UPDATED,
    EventType.SUSPENDED,
    EventType.REACTIVATED,
    EventType.CHURNED,
)
# Catalogue field paths → the CRM body's (data.* is the same on both sides).
RENAMES = {"subject": "client_id", "time": "occurred_at", "id": "webhook-id"}


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; ConfigError (without the value) if malformed."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ConfigError("SUBACCOUNT_WORKER_CRM_WEBHOOK_SECRETS: each secret is whsec_ + base64")
    return key


def sign_crm(payload: bytes, secret: str, webhook_id: str, t: int) -> str:
    """The `webhook-signature` header a Standard Webhooks sender would send for `payload`."""
    return "v1," + _signature(decode_secret(secret), webhook_id.encode(), str(t), payload)


def _signature(key: bytes, webhook_id: bytes, timestamp: str, payload: bytes) -> str:
    signed = webhook_id + b"." + timestamp.encode() + b"." + payload
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class CrmSignatures:
    """Verifies Standard Webhooks signatures against every configured secret."""

    def __init__(self, secrets: Sequence[SecretStr]) -> None:
        self._keys = [decode_secret(s.get_secret_value()) for s in secrets if s.get_secret_value()]

    def verify(self, payload: bytes, headers: Headers, now: float) -> str:
        """The `webhook-id` of a correctly signed, timely request; Unauthorized otherwise."""
        webhook_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        signature = headers.get("webhook-signature", "")
        if not self._keys:
            raise Unauthorized(LOG_SOURCE, "no crm_webhook_secrets configured")
        if not (webhook_id and timestamp and signature):
            raise Unauthorized(LOG_SOURCE, "a webhook-id/-timestamp/-signature header is missing")
        if not (timestamp.isascii() and timestamp.isdecimal() and len(timestamp) <= 12):
            raise Unauthorized(LOG_SOURCE, "webhook-timestamp is not unix seconds")
        if not self._matches(payload, webhook_id, timestamp, signature):
            raise Unauthorized(LOG_SOURCE, "no v1 signature matches a configured secret")
        if abs(now - int(timestamp)) > TOLERANCE_S:
            raise Unauthorized(LOG_SOURCE, "timestamp outside the tolerance")
        return webhook_id

    def _matches(self, payload: bytes, webhook_id: str, timestamp: str, header: str) -> bool:
        """Whether any `v1` signature in `header` is right for any configured key."""
        candidates = [
            value.encode("latin-1")
            for version, _, value in (item.partition(",") for item in header.split())
            if version == "v1"
        ]
        raw_id = webhook_id.encode("latin-1")  # the header's bytes, as the sender signed them
        matched = False
        for key in self._keys:
            expected = _signature(key, raw_id, timestamp, payload).encode()
            for candidate in candidates:
                matched |= hmac.compare_digest(expected, candidate)
        return matched


def map_crm(doc: Any, webhook_id: str) -> dict[str, Any]:
    """The catalogue event (a dict, not yet validated) a CRM webhook body maps to."""
    if not isinstance(doc, dict):
        raise Malformed(["body: must be a JSON object"])
    type_ = doc.get("type")
    if not isinstance(type_, str):
        raise Malformed(["type: required, a string"])
    if type_ not in TYPES:
        allowed = ", ".join(TYPES)
        raise Unmappable([f"type: the CRM may not send {type_!r} (it may send {allowed})"])
    return envelope(
        type_=type_,
        source=SOURCE,
        id_=webhook_id,
        subject=doc.get("client_id"),
        time=doc.get("occurred_at"),
        data=doc.get("data"),
    )
