"""The ingress while its Redis is down: 503 with Retry-After, nothing enqueued, then recovery."""

from __future__ import annotations

import asyncio
import json

import httpx
import redis

from tests.ingress_support import (
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
    """With Redis stopped webhooks get 503 + Retry-After; after restart the retry gets 202, once."""
    settings = ingress_settings(redis_server.url)
    body = json.dumps(stripe_event("invoice.paid", invoice(credits="10"), "evt_outage")).encode()
    with running_ingress(settings) as app:
        assert app.http.get("/readyz").status_code == 200
        try:
            redis_server.stop()
            during = app.http.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
            burst = asyncio.run(concurrent_posts(app.url, body, 10))
            ready_during = app.http.get("/readyz")
            alive_during = app.http.get("/healthz")
        finally:
            redis_server.start()
        after = app.http.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
        ready_after = app.http.get("/readyz")
    assert during.status_code == 503
    assert during.headers["retry-after"] == "5"
    assert during.json()["error"] == "unavailable"
    assert [r.status_code for r in burst] == [503] * 10
    assert (ready_during.status_code, alive_during.status_code) == (503, 200)
    assert ready_during.headers["retry-after"] == "5"
    assert after.status_code == 202
    assert ready_after.status_code == 200
    assert [e["id"] for e in queued_events(redis_client, settings)] == ["evt_outage"]


async def concurrent_posts(url: str, body: bytes, count: int) -> list[httpx.Response]:
    """`count` signed deliveries of `body` at once (they share group commits)."""
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        posts = [
            client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
            for _ in range(count)
        ]
        return list(await asyncio.gather(*posts))
