"""Stripe webhooks: verify `Stripe-Signature` as Stripe documents it, then map onto the catalogue.

Verification (https://docs.stripe.com/webhooks#verify-manually): the header is
`t=<unix s>,v1=<hex>[,v1=<hex>...]`; the expected signature is HMAC-SHA256 keyed with the endpoint
secret over `<t>.<raw body>`; any `v1` may match (Stripe sends several while rotating secrets);
the timestamp must be within the tolerance of now, either way.

Mapping (the event id is Stripe's `evt_...` id, the source `urn:subaccount-worker:stripe`, the
time Stripe's `created`):

    invoice.paid                   → invoice.paid    invoice_id = the invoice's id;
    invoice.payment_succeeded                        credits = metadata.credits, else the sum
                                                     over line items of quantity * credits of
                                                     the price (setting stripe_price_credits)
    customer.subscription.updated  → plan.changed    credit_type = metadata.credit_type;
                                                     recurring.amount = metadata.recurring_credits
                                                     every price.recurring.interval of the first
                                                     item (day/week/month → daily/weekly/monthly)
    customer.subscription.deleted  → client.churned  reason "Stripe subscription <id> deleted"
    anything else                  → (nothing)       200, logged and ignored

The client id is `metadata.client_id` of the invoice or subscription; for an invoice it may
also come from the subscription metadata Stripe copies onto it (`parent.subscription_details` or,
before API 2025-03-31, `subscription_details`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from handlers.events import EventType
from worker.ingress import sources
from worker.ingress.mapping import Ignored, envelope, rfc3339_utc
from worker.ingress.problems import Malformed, Unauthorized, Unmappable

SOURCE = sources.STRIPE
LOG_SOURCE = "stripe"
MAX_UNIX_S = 253_402_300_799  # 9999-12-31T23:59:59Z
PERIODS = {"day": "daily", "week": "weekly", "month": "monthly"}
# Catalogue field paths of a mapped event → where the value came from in the Stripe event.
RENAMES = {
    "id": "id",
    "time": "created",
    "subject": "data.object.metadata.client_id",
    "data.invoice_id": "data.object.id",
    "data.credit_type": "data.object.metadata.credit_type",
    "data.recurring.amount": "data.object.metadata.recurring_credits",
}
_WHOLE = re.compile(r"^[0-9]{1,10}$")


def sign_stripe(payload: bytes, secret: str, t: int) -> str:
    """The `Stripe-Signature` header Stripe would send for `payload` at unix time `t`."""
    return f"t={t},v1={_signature(payload, secret, str(t))}"


def verify_stripe(
    payload: bytes, header: str | None, secret: str, tolerance_s: int, now: float
) -> None:
    """Return if `header` signs `payload` with `secret` within the tolerance; else Unauthorized."""
    if not secret:
        raise Unauthorized(LOG_SOURCE, "no stripe_webhook_secret configured")
    if not header:
        raise Unauthorized(LOG_SOURCE, "Stripe-Signature header missing")
    timestamp, candidates = _parse_header(header)
    if timestamp is None or not candidates:
        raise Unauthorized(LOG_SOURCE, "Stripe-Signature header has no t or no v1")
    expected = _signature(payload, secret, timestamp).encode()
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate.encode("latin-1"))
    if not matched:
        raise Unauthorized(LOG_SOURCE, "no v1 signature matches")
    if abs(now - int(timestamp)) > tolerance_s:
        raise Unauthorized(LOG_SOURCE, "timestamp outside the tolerance")


def _signature(payload: bytes, secret: str, timestamp: str) -> str:
    signed = timestamp.encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def _parse_header(header: str) -> tuple[str | None, list[str]]:
    """The `t` value (digits only) and every `v1` value of a Stripe-Signature header."""
    timestamp: str | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isascii() and value.isdecimal() and len(value) <= 12:
            timestamp = value
        elif key == "v1":
            candidates.append(value)
    return timestamp, candidates


@dataclass(frozen=True)
class StripeEvent:
    """The envelope of a Stripe event: its id, type and creation time."""

    id: str
    type: str
    created: int


Mapper = Callable[[dict[str, Any], Mapping[str, int]], tuple[EventType, dict[str, Any]]]


def map_stripe(doc: Any, price_credits: Mapping[str, int]) -> dict[str, Any] | Ignored:
    """The catalogue event (a dict, not yet validated) a Stripe event maps to, or Ignored."""
    head = _head(doc)
    mapper = MAPPERS.get(head.type)
    if mapper is None:
        return Ignored(f"stripe event type {head.type!r} is not mapped")
    obj = _object(doc)
    subject = _client_id(obj)
    type_, data = mapper(obj, price_credits)
    return envelope(
        type_=type_,
        source=SOURCE,
        id_=head.id,
        subject=subject,
        time=rfc3339_utc(head.created),
        data=data,
    )


def _head(doc: Any) -> StripeEvent:
    """Stripe's event id, type and created time, or 400 naming each missing field."""
    if not isinstance(doc, dict):
        raise Malformed(["body: must be a Stripe event object"])
    reasons = []
    if not isinstance(doc.get("id"), str) or not doc["id"]:
        reasons.append("id: required, a non-empty string")
    if not isinstance(doc.get("type"), str):
        reasons.append("type: required, a string")
    created = doc.get("created")
    if not isinstance(created, int) or isinstance(created, bool) or not 0 < created <= MAX_UNIX_S:
        reasons.append("created: required, unix seconds")
        created = 0
    if reasons:
        raise Malformed(reasons)
    return StripeEvent(id=doc["id"], type=doc["type"], created=created)


def _object(doc: dict[str, Any]) -> dict[str, Any]:
    """The event's `data.object` (the invoice or subscription), or 400 if there is none."""
    obj = _dig(doc, "data", "object")
    if not isinstance(obj, dict):
        raise Malformed(["data.object: required, an object"])
    return obj


def _client_id(obj: dict[str, Any]) -> str:
    """`metadata.client_id` of the object (or the subscription metadata copied onto an invoice)."""
    parent = obj.get("parent")
    for holder in (
        obj,
        _dig(parent, "subscription_details"),
        _dig(obj, "subscription_details"),
    ):
        value = _dig(holder, "metadata", "client_id")
        if isinstance(value, str) and value:
            return value
    raise Unmappable(
        ["data.object.metadata.client_id: missing; set it on the Stripe invoice or subscription"]
    )


def _dig(value: Any, *path: str) -> Any:
    """`value[path[0]][path[1]]...`, or None where a step is missing or not an object."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _invoice_paid(
    obj: dict[str, Any], prices: Mapping[str, int]
) -> tuple[EventType, dict[str, Any]]:
    """invoice.paid: the invoice id and its credits."""
    return EventType.INVOICE_PAID, {"invoice_id": obj.get("id"), "credits": _credits(obj, prices)}


def _credits(invoice: dict[str, Any], prices: Mapping[str, int]) -> int:
    """`metadata.credits`, else the sum of quantity * credits of line items' prices; 422 if none."""
    declared = _dig(invoice, "metadata", "credits")
    if declared is not None:
        amount = _whole(declared)
        if amount is None or amount <= 0:
            raise Unmappable(["data.object.metadata.credits: must be a positive whole number"])
        return amount
    total = sum(
        prices.get(price, 0) * quantity for price, quantity in _line_prices(invoice) if price
    )
    if total <= 0:
        raise Unmappable(
            [
                "data.object.metadata.credits: missing, and no line item's price is in "
                "stripe_price_credits"
            ]
        )
    return total


def _line_prices(invoice: dict[str, Any]) -> list[tuple[str | None, int]]:
    """(price id, quantity) of each line item on the invoice's first page of lines."""
    lines = _dig(invoice, "lines", "data")
    if not isinstance(lines, list):
        return []
    found = []
    for line in lines:
        quantity = _dig(line, "quantity")
        count = quantity if type(quantity) is int and quantity >= 0 else 1
        found.append((_price_id(line), count))
    return found


def _price_id(line: Any) -> str | None:
    """A line item's price id: `price.id` (or `price`), or `pricing.price_details.price`."""
    for price in (_dig(line, "price"), _dig(line, "pricing", "price_details", "price")):
        if isinstance(price, dict):
            price = price.get("id")
        if isinstance(price, str):
            return price
    return None


def _whole(value: Any) -> int | None:
    """A metadata number (Stripe metadata values are strings) as an int, or None."""
    if type(value) is int:
        return value
    if isinstance(value, str) and _WHOLE.match(value):
        return int(value)
    return None


def _plan_changed(
    obj: dict[str, Any], prices: Mapping[str, int]
) -> tuple[EventType, dict[str, Any]]:
    """plan.changed: `metadata.credit_type` and/or `metadata.recurring_credits` per interval."""
    credit_type = _dig(obj, "metadata", "credit_type")
    recurring_credits = _dig(obj, "metadata", "recurring_credits")
    if credit_type is None and recurring_credits is None:
        raise Unmappable(
            ["data.object.metadata: needs credit_type or recurring_credits to map to plan.changed"]
        )
    data: dict[str, Any] = {"credit_type": credit_type}
    if recurring_credits is not None:
        amount = _whole(recurring_credits)
        if amount is None:
            raise Unmappable(["data.object.metadata.recurring_credits: must be a whole number"])
        data["recurring"] = {"amount": amount, "period": _period(obj)}
    return EventType.PLAN_CHANGED, {k: v for k, v in data.items() if v is not None}


def _period(subscription: dict[str, Any]) -> str:
    """The catalogue period of the subscription's first recurring price, or 422."""
    items = _dig(subscription, "items", "data")
    for index, item in enumerate(items if isinstance(items, list) else []):
        recurring = _dig(item, "price", "recurring")
        if not isinstance(recurring, dict):
            continue
        interval, count = recurring.get("interval"), recurring.get("interval_count", 1)
        if interval in PERIODS and count == 1:
            return PERIODS[str(interval)]
        field = f"data.object.items.data[{index}].price.recurring"
        raise Unmappable(
            [f"{field}: every {count!r} {interval!r} has no Subaccount period (day, week, month)"]
        )
    raise Unmappable(["data.object.items.data: no recurring price to take the period from"])


def _churned(obj: dict[str, Any], prices: Mapping[str, int]) -> tuple[EventType, dict[str, Any]]:
    """client.churned: the subscription ended; the reason says which and why."""
    reason = f"Stripe subscription {obj.get('id')} deleted"
    detail = _dig(obj, "cancellation_details", "reason")
    if isinstance(detail, str) and detail:
        reason += f": {detail}"
    return EventType.CHURNED, {"reason": reason[:1000]}


MAPPERS: dict[str, Mapper] = {
    "invoice.paid": _invoice_paid,
    "invoice.payment_succeeded": _invoice_paid,
    "customer.subscription.updated": _plan_changed,
    "customer.subscription.deleted": _churned,
}
