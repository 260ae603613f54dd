"""Helpers for driving the ingress in tests: settings, signed requests and reading the queue.

No tests live here: the unit, integration and end-to-end ingress tests import these helpers.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dramatiq
import httpx
import redis
from starlette.applications import Starlette

from tests.servers import ThreadedUvicorn
from worker import keys
from worker.ingress import create_app, sign_crm, sign_stripe
from worker.pipeline.keyspace import Keyspace
from worker.settings import Settings, load_settings

TOKEN = "billing-token-new-5b1c"
OLD_TOKEN = "billing-token-old-9d2e"
STRIPE_SECRET = "whsec_stripe_test_3f9a8b7c6d5e"
CRM_SECRET = "whsec_" + base64.b64encode(b"crm-secret-new-0123456789abcdef").decode()
OLD_CRM_SECRET = "whsec_" + base64.b64encode(b"crm-secret-old-fedcba9876543210").decode()
PRICE_CREDITS = {"price_basic": 1000, "price_topup": 250}
PREFIX = "saw-ingress-test"

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON = "application/json"


def ingress_settings(redis_url: str, **overrides: Any) -> Settings:
    """Settings with every ingress secret configured (two tokens, two CRM secrets)."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "key_prefix": PREFIX,
        "ingress_tokens": [TOKEN, OLD_TOKEN],
        "stripe_webhook_secret": STRIPE_SECRET,
        "crm_webhook_secrets": [CRM_SECRET, OLD_CRM_SECRET],
        "stripe_price_credits": PRICE_CREDITS,
        "ingress_openapi": True,  # off by default; test_ingress.py reads the document
    }
    values.update(overrides)
    return load_settings(**values)


@dataclass
class RunningIngress:
    """An ingress app served by uvicorn on loopback, with an HTTP client pointed at it."""

    app: Starlette
    server: ThreadedUvicorn
    settings: Settings
    http: httpx.Client

    @property
    def url(self) -> str:
        return self.server.url


@contextmanager
def running_ingress(settings: Settings) -> Iterator[RunningIngress]:
    """Serve `create_app(settings)` under a real uvicorn for the duration of the block."""
    app = create_app(settings)
    server = ThreadedUvicorn(app).start()
    http = httpx.Client(base_url=server.url, timeout=10.0)
    try:
        yield RunningIngress(app, server, settings, http)
    finally:
        http.close()
        server.stop()


# --- /events ---------------------------------------------------------------------------------


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def post_structured(http: httpx.Client, event: Any, token: str = TOKEN) -> httpx.Response:
    """POST one event in structured mode."""
    headers = {**bearer(token), "content-type": STRUCTURED}
    return http.post("/events", content=json.dumps(event), headers=headers)


def post_batch(http: httpx.Client, events: Any, token: str = TOKEN) -> httpx.Response:
    """POST a batch of events."""
    headers = {**bearer(token), "content-type": BATCH}
    return http.post("/events", content=json.dumps(events), headers=headers)


def binary_headers(event: dict[str, Any], token: str = TOKEN) -> dict[str, str]:
    """The headers of `event` in binary mode (its data goes in the body)."""
    headers = {**bearer(token), "content-type": JSON}
    for name, value in event.items():
        if name != "data":
            headers[f"ce-{name}"] = str(value)
    return headers


# --- Stripe ----------------------------------------------------------------------------------


def stripe_event(
    type_: str, obj: dict[str, Any], event_id: str = "evt_1", created: int = 1_767_225_600
) -> dict[str, Any]:
    """A Stripe event object wrapping `obj` (default time 2026-01-01T00:00:00Z)."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "type": type_,
        "created": created,
        "livemode": False,
        "data": {"object": obj},
    }


def invoice(
    client_id: str | None = "C1",
    invoice_id: str = "in_1",
    credits: str | None = None,
    lines: tuple[tuple[str, int], ...] = (),
) -> dict[str, Any]:
    """A Stripe invoice with optional `metadata.credits` and (price id, quantity) line items."""
    metadata: dict[str, str] = {}
    if client_id is not None:
        metadata["client_id"] = client_id
    if credits is not None:
        metadata["credits"] = credits
    data = [{"object": "line_item", "price": {"id": p}, "quantity": q} for p, q in lines]
    return {"id": invoice_id, "object": "invoice", "metadata": metadata, "lines": {"data": data}}


def subscription(
    client_id: str | None = "C1", interval: str = "month", **metadata: str
) -> dict[str, Any]:
    """A Stripe subscription whose one item has a recurring price every `interval`."""
    if client_id is not None:
        metadata["client_id"] = client_id
    price = {"id": "price_basic", "recurring": {"interval": interval, "interval_count": 1}}
    return {
        "id": "sub_1",
        "object": "subscription",
        "metadata": metadata,
        "items": {"data": [{"price": price, "quantity": 1}]},
    }


def stripe_headers(
    body: bytes, secret: str = STRIPE_SECRET, t: int | None = None
) -> dict[str, str]:
    """Headers of a Stripe delivery of `body`, signed now (or at `t`)."""
    t = int(time.time()) if t is None else t
    return {
        "content-type": "application/json; charset=utf-8",
        "stripe-signature": sign_stripe(body, secret, t),
    }


def post_stripe(http: httpx.Client, event: dict[str, Any]) -> httpx.Response:
    """POST a correctly signed Stripe event."""
    body = json.dumps(event).encode()
    return http.post("/webhooks/stripe", content=body, headers=stripe_headers(body))


# --- CRM -------------------------------------------------------------------------------------


def crm_body(
    type_: str = "client.suspended",
    client_id: str = "C1",
    data: dict[str, Any] | None = None,
    occurred_at: str = "2026-01-01T00:00:00Z",
) -> dict[str, Any]:
    """A CRM webhook body."""
    body: dict[str, Any] = {"type": type_, "client_id": client_id, "occurred_at": occurred_at}
    if data is not None:
        body["data"] = data
    return body


def crm_headers(
    body: bytes, webhook_id: str = "msg_1", secret: str = CRM_SECRET, t: int | None = None
) -> dict[str, str]:
    """Standard Webhooks headers for `body`, signed now (or at `t`)."""
    t = int(time.time()) if t is None else t
    return {
        "content-type": JSON,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(t),
        "webhook-signature": sign_crm(body, secret, webhook_id, t),
    }


def post_crm(http: httpx.Client, doc: dict[str, Any], webhook_id: str = "msg_1") -> httpx.Response:
    """POST a correctly signed CRM webhook."""
    body = json.dumps(doc).encode()
    return http.post("/webhooks/crm", content=body, headers=crm_headers(body, webhook_id))


# --- the queue -------------------------------------------------------------------------------


def queued_events(client: redis.Redis, settings: Settings) -> list[dict[str, Any]]:
    """The events on the worker's queue, in order, read from Dramatiq's Redis layout (in the
    broker's database)."""
    queue = keys.dramatiq_queue(settings.key_prefix, settings.queue_name)
    keyspace = Keyspace.of(settings)
    (ids,) = keyspace.read(client, lambda p: p.lrange(queue, 0, -1))
    (raw,) = keyspace.read(client, lambda p: p.hmget(f"{queue}.msgs", ids)) if ids else ([],)
    blobs = [blob for blob in raw if isinstance(blob, bytes)]
    assert len(blobs) == len(ids), "a queued message id has no message"
    return [dramatiq.Message.decode(blob).args[0] for blob in blobs]
