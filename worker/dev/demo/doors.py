"""The demo's senders: a CRM, Stripe and the billing system knocking on the ingress's front doors.

Each request is signed the way its real sender signs it: the CRM per Standard Webhooks (with the
`standardwebhooks` package, not our verifier's code), Stripe with `Stripe-Signature`, the billing
system with a bearer token on `POST /events`. The ingress answers 202 naming each event's dedupe
key, which is how the story finds the outcome of each delivery.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from worker.ingress.stripe import sign_stripe


@dataclass(frozen=True)
class Delivery:
    """One request the ingress accepted: what it was, through which door, the event's key."""

    label: str
    door: str
    key: str


@dataclass(frozen=True)
class Secrets:
    """What each sender shares with the ingress (never printed)."""

    crm: str  # whsec_<base64>
    stripe: str
    billing_token: str


def rfc3339(at: float) -> str:
    """Unix seconds as an RFC 3339 UTC timestamp with milliseconds."""
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FrontDoors:
    """Signed requests to the ingress at `base_url`; every answer must be a 202."""

    def __init__(self, base_url: str, secrets: Secrets) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=10)
        self._secrets = secrets
        self._crm = Webhook(secrets.crm)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def crm(
        self,
        type_: str,
        client_id: str,
        data: dict[str, Any],
        at: float,
        webhook_id: str,
        note: str = "",
    ) -> Delivery:
        """A CRM webhook (Standard Webhooks) about `client_id`, occurred at unix time `at`."""
        body = json.dumps(
            {"type": type_, "client_id": client_id, "occurred_at": rfc3339(at), "data": data}
        )
        now = dt.datetime.now(dt.UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._crm.sign(webhook_id, now, body),
        }
        return self._post("/webhooks/crm", _label(type_, note), body.encode(), headers)

    def stripe(self, event: dict[str, Any], note: str = "") -> Delivery:
        """A Stripe event, signed with `Stripe-Signature` (timestamp + HMAC-SHA256)."""
        body = json.dumps(event).encode()
        headers = {
            "content-type": "application/json",
            "stripe-signature": sign_stripe(body, self._secrets.stripe, int(time.time())),
        }
        label = _label(event["type"], note)
        return self._post("/webhooks/stripe", label, body, headers)

    def billing(self, event: dict[str, Any], note: str = "") -> Delivery:
        """A CloudEvent from the billing system (structured mode, bearer token)."""
        headers = {
            "content-type": "application/cloudevents+json",
            "authorization": f"Bearer {self._secrets.billing_token}",
        }
        body = json.dumps(event).encode()
        return self._post("/events", _label(event["type"], note), body, headers)

    def _post(self, door: str, label: str, body: bytes, headers: dict[str, str]) -> Delivery:
        response = self._http.post(door, content=body, headers=headers)
        if response.status_code != 202:
            raise DoorRefused(f"{door} answered {response.status_code}: {response.text[:300]}")
        accepted = response.json()["accepted"]
        return Delivery(label=label, door=door, key=str(accepted[0]["key"]))


def _label(type_: str, note: str) -> str:
    return type_ + (f" {note}" if note else "")


class DoorRefused(RuntimeError):
    """The ingress refused a request the story expected it to accept."""


def stripe_invoice_paid(
    event_id: str, invoice_id: str, client_id: str, credits: int, at: float
) -> dict[str, Any]:
    """A Stripe `invoice.paid` event for an invoice whose metadata names the client and credits."""
    return {
        "id": event_id,
        "object": "event",
        "type": "invoice.paid",
        "created": int(at),
        "data": {
            "object": {
                "id": invoice_id,
                "object": "invoice",
                "status": "paid",
                "metadata": {"client_id": client_id, "credits": str(credits)},
            }
        },
    }


def stripe_subscription_deleted(
    event_id: str, subscription_id: str, client_id: str, at: float
) -> dict[str, Any]:
    """A Stripe `customer.subscription.deleted` event (the client cancelled)."""
    return {
        "id": event_id,
        "object": "event",
        "type": "customer.subscription.deleted",
        "created": int(at),
        "data": {
            "object": {
                "id": subscription_id,
                "object": "subscription",
                "status": "canceled",
                "metadata": {"client_id": client_id},
                "cancellation_details": {"reason": "cancellation_requested"},
            }
        },
    }


def billing_invoice_paid(
    event_id: str, invoice_id: str, client_id: str, credits: int, at: float
) -> dict[str, Any]:
    """The billing system's own CloudEvent for a paid invoice."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "urn:billing",
        "type": "invoice.paid",
        "subject": client_id,
        "time": rfc3339(at),
        "datacontenttype": "application/json",
        "data": {"invoice_id": invoice_id, "credits": credits},
    }
