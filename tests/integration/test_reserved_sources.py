"""Webhook sources are reserved: nobody claims a future webhook's dedupe key through `/events`.

The attack: with an `/events` token, post `source=urn:subaccount-worker:stripe` and the id of a
Stripe event yet to come; the genuine signed webhook would then be a `duplicate` and never apply.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from handlers import examples as factories
from tests.cli_support import cli_env, run_cli
from tests.ingress_support import (
    RunningIngress,
    binary_headers,
    crm_body,
    ingress_settings,
    invoice,
    post_batch,
    post_crm,
    post_stripe,
    post_structured,
    queued_events,
    running_ingress,
    stripe_event,
)
from tests.servers import RedisServer
from worker.settings import load_settings

STRIPE = "urn:subaccount-worker:stripe"
CRM = "urn:subaccount-worker:crm"


@pytest.fixture(scope="module")
def ingress(redis_server: RedisServer) -> Iterator[RunningIngress]:
    with running_ingress(ingress_settings(redis_server.url)) as app:
        yield app


def claim(source: str, event_id: str) -> dict[str, object]:
    """An invoice.paid that claims `source` + `event_id`."""
    event = factories.invoice_paid("C1", "INV-9", 500)
    return {**event, "source": source, "id": event_id}


@pytest.mark.parametrize(
    "source", [STRIPE, CRM, "URN:Subaccount-Worker:stripe", "urn:subaccount-worker:future"]
)
def test_events_refuses_a_webhook_source_in_every_mode(
    ingress: RunningIngress, redis_client: redis.Redis, source: str
) -> None:
    """Structured, batch and binary mode: 400 naming `source`; nothing is enqueued."""
    event = claim(source, "evt_future")
    structured = post_structured(ingress.http, event)
    batch = post_batch(ingress.http, [factories.suspended("C1"), event])
    binary = ingress.http.post(
        "/events", content=json.dumps(event["data"]), headers=binary_headers(event)
    )
    assert [r.status_code for r in (structured, batch, binary)] == [400, 400, 400]
    assert structured.json()["reasons"][0].startswith("source: ")
    assert "reserved for the ingress's verified webhooks" in structured.json()["reasons"][0]
    assert batch.json()["reasons"][0].startswith("[1] source: ")
    assert binary.json()["reasons"][0].startswith("ce-source: ")
    assert queued_events(redis_client, ingress.settings) == []


def test_the_genuine_webhooks_are_still_enqueued_after_a_refused_claim(
    ingress: RunningIngress, redis_client: redis.Redis
) -> None:
    """After /events was refused the Stripe and CRM ids, the signed webhooks with them enqueue."""
    assert post_structured(ingress.http, claim(STRIPE, "evt_future")).status_code == 400
    assert post_structured(ingress.http, claim(CRM, "msg_future")).status_code == 400
    stripe = post_stripe(
        ingress.http, stripe_event("invoice.paid", invoice(credits="500"), "evt_future")
    )
    crm = post_crm(ingress.http, crm_body("client.suspended", "C1"), webhook_id="msg_future")
    assert (stripe.status_code, crm.status_code) == (202, 202)
    queued = [(e["source"], e["id"]) for e in queued_events(redis_client, ingress.settings)]
    assert queued == [(STRIPE, "evt_future"), (CRM, "msg_future")]


def test_events_accepts_its_own_sources(ingress: RunningIngress, redis_client: redis.Redis) -> None:
    """The control: a source outside the namespace (even one naming it later) is accepted."""
    event = claim("urn:billing:subaccount-worker:stripe", "evt_future")
    assert post_structured(ingress.http, event).status_code == 202
    assert len(queued_events(redis_client, ingress.settings)) == 1


def test_send_refuses_a_webhook_source_unless_the_operator_allows_it(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """`send` exits 2 naming the event and its source; `--allow-reserved-source` enqueues it."""
    path = tmp_path / "events.jsonl"
    events = [factories.suspended("C1"), claim(STRIPE, "evt_by_hand")]
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    env = cli_env(redis_url)
    settings = load_settings(redis_url=redis_url, key_prefix=env["SUBACCOUNT_WORKER_KEY_PREFIX"])

    refused = run_cli(env, "send", str(path))
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "[1] (line 2) source: 'urn:subaccount-worker:stripe' is reserved" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert queued_events(redis_client, settings) == []

    allowed = run_cli(env, "send", "--allow-reserved-source", str(path))
    assert allowed.returncode == 0, allowed.stderr
    queued = [(e["source"], e["id"]) for e in queued_events(redis_client, settings)]
    assert queued == [("urn:test", events[0]["id"]), (STRIPE, "evt_by_hand")]
