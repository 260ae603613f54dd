"""Example catalogue events: builders used by the demo, the benchmarks and the tests."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

_ids = itertools.count(1)
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def at(seconds: float) -> str:
    """RFC 3339 time `seconds` after T0."""
    return (T0 + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def event(
    type_: str,
    client_id: str,
    data: dict[str, Any] | None = None,
    *,
    t: float = 0,
    event_id: str | None = None,
    source: str = "urn:test",
) -> dict[str, Any]:
    """A CloudEvent dict of the catalogue."""
    return {
        "specversion": "1.0",
        "id": event_id or f"evt-{next(_ids)}",
        "source": source,
        "type": type_,
        "subject": client_id,
        "time": at(t),
        "data": data or {},
    }


def onboarded(client_id: str, t: float = 0, **data: Any) -> dict[str, Any]:
    body = {"email": f"{client_id.lower()}@example.com", "credit_type": "one_time_credit"}
    body.update(data)
    return event("client.onboarded", client_id, body, t=t)


def invoice_paid(client_id: str, invoice_id: str, credits: int, t: float = 0) -> dict[str, Any]:
    return event("invoice.paid", client_id, {"invoice_id": invoice_id, "credits": credits}, t=t)


def suspended(client_id: str, t: float = 0) -> dict[str, Any]:
    return event("client.suspended", client_id, {"reason": "unpaid"}, t=t)


def reactivated(client_id: str, t: float = 0) -> dict[str, Any]:
    return event("client.reactivated", client_id, {}, t=t)


def updated(client_id: str, t: float = 0, **data: Any) -> dict[str, Any]:
    return event("client.updated", client_id, data, t=t)


def plan_changed(client_id: str, t: float = 0, **data: Any) -> dict[str, Any]:
    return event("plan.changed", client_id, data, t=t)


def churned(client_id: str, t: float = 0) -> dict[str, Any]:
    return event("client.churned", client_id, {"reason": "contract ended"}, t=t)
