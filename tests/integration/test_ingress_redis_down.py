"""The ingress while its Redis is down: 503 with Retry-After, nothing enqueued, then recovery."""

from __future__ import annotations

import json

import redis

from tests.integration.test_ingress_support import (
    ingress_settings,
    invoice,
    queued_events,
    running_ingress,
    stripe_event,
    stripe_headers,
)
from tests.servers import RedisServer


def test_redis_outage_is_503_and_the_retried_webhook_is_enqueued_once(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """With Redis stopped a webhook gets 503 + Retry-After; after restart its retry gets 202."""
    settings = ingress_settings(redis_server.url)
    body = json.dumps(stripe_event("invoice.paid", invoice(credits="10"), "evt_outage")).encode()
    with running_ingress(settings) as app:
        assert app.http.get("/readyz").status_code == 200
        try:
            redis_server.stop()
            during = app.http.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
            ready_during = app.http.get("/readyz")
            alive_during = app.http.get("/healthz")
        finally:
            redis_server.start()
        after = app.http.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
        ready_after = app.http.get("/readyz")
    assert during.status_code == 503
    assert during.headers["retry-after"] == "5"
    assert during.json()["error"] == "unavailable"
    assert (ready_during.status_code, alive_during.status_code) == (503, 200)
    assert ready_during.headers["retry-after"] == "5"
    assert after.status_code == 202
    assert ready_after.status_code == 200
    assert [e["id"] for e in queued_events(redis_client, settings)] == ["evt_outage"]
