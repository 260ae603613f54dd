"""The ingress end to end: real uvicorn on loopback, the test-owned Redis, the real queue layout."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import structlog

import worker.ingress.app
from handlers import examples as factories
from tests.ingress_support import (
    BATCH,
    JSON,
    OLD_CRM_SECRET,
    OLD_TOKEN,
    STRIPE_SECRET,
    STRUCTURED,
    TOKEN,
    RunningIngress,
    binary_headers,
    crm_body,
    crm_headers,
    ingress_settings,
    invoice,
    post_batch,
    post_crm,
    post_stripe,
    post_structured,
    queued_events,
    running_ingress,
    stripe_event,
    stripe_headers,
    subscription,
)
from tests.servers import RedisServer
from worker.ingress import sign_stripe
from worker.ingress.problems import UNAUTHORIZED_REASON

UNAUTHORIZED = {"error": "unauthorized", "reasons": [UNAUTHORIZED_REASON]}


def _assert_unauthorized(
    ingress: RunningIngress, redis_client: redis.Redis, path: str, body: bytes, headers: Any
) -> None:
    """The request is refused with the one 401 every route gives, and nothing is queued."""
    response = ingress.http.post(path, content=body, headers=headers)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert queue(redis_client, ingress) == []


@pytest.fixture(scope="module")
def ingress(redis_server: RedisServer) -> Iterator[RunningIngress]:
    """One ingress for this module, on the session's Redis (tests flush it via `redis_client`)."""
    with running_ingress(ingress_settings(redis_server.url, ingress_max_body_bytes=4096)) as app:
        yield app


def queue(redis_client: redis.Redis, ingress: RunningIngress) -> list[dict[str, Any]]:
    return queued_events(redis_client, ingress.settings)


# --- POST /events ----------------------------------------------------------------------------


def test_structured_event_is_enqueued(ingress: RunningIngress, redis_client: redis.Redis) -> None:
    """A structured CloudEvent is answered 202 with its key and is on the queue as sent."""
    event = factories.onboarded("C1")
    response = post_structured(ingress.http, event)
    assert response.status_code == 202
    [accepted] = response.json()["accepted"]
    assert accepted["id"] == event["id"]
    assert accepted["source"] == event["source"]
    assert len(accepted["key"]) == 32
    [queued] = queue(redis_client, ingress)
    assert queued["id"] == event["id"]
    assert queued["type"] == "client.onboarded"
    assert queued["data"] == event["data"]


def test_batch_is_enqueued_in_order(ingress: RunningIngress, redis_client: redis.Redis) -> None:
    """A batch of three is answered 202 naming all three and enqueued in the sent order."""
    events = [factories.onboarded("C1"), factories.suspended("C1"), factories.churned("C2")]
    response = post_batch(ingress.http, events)
    assert response.status_code == 202
    assert [a["id"] for a in response.json()["accepted"]] == [e["id"] for e in events]
    assert [q["id"] for q in queue(redis_client, ingress)] == [e["id"] for e in events]


def test_batch_with_invalid_events_is_400_and_enqueues_nothing(
    ingress: RunningIngress, redis_client: redis.Redis
) -> None:
    """One bad event in a batch refuses the whole batch, naming each bad one by index."""
    bad_email = factories.onboarded("C2", email="not-an-email")
    response = post_batch(ingress.http, [factories.onboarded("C1"), bad_email, 7])
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "malformed"
    assert any(r.startswith("[1] data.email:") for r in body["reasons"])
    assert "[2] event: must be a JSON object" in body["reasons"]
    assert not any(r.startswith("[0]") for r in body["reasons"])
    assert queue(redis_client, ingress) == []


def test_binary_mode_event_is_enqueued(ingress: RunningIngress, redis_client: redis.Redis) -> None:
    """A binary-mode event (ce-* headers, percent-encoded, data as the body) is enqueued."""
    event = factories.updated("C1", email="new@example.com")
    headers = binary_headers(event)
    headers["ce-source"] = "urn:billing%20system"
    response = ingress.http.post("/events", content=json.dumps(event["data"]), headers=headers)
    assert response.status_code == 202
    [queued] = queue(redis_client, ingress)
    assert queued["source"] == "urn:billing system"
    assert queued["data"] == {"email": "new@example.com"}
    assert queued["datacontenttype"] == JSON


def test_binary_mode_reasons_name_headers(
    ingress: RunningIngress, redis_client: redis.Redis
) -> None:
    """A bad binary-mode attribute is reported under its header name."""
    headers = binary_headers(factories.suspended("C1"))
    headers["ce-time"] = "yesterday"
    response = ingress.http.post("/events", content=b"{}", headers=headers)
    assert response.status_code == 400
    assert [r.split(":")[0] for r in response.json()["reasons"]] == ["ce-time"]
    assert queue(redis_client, ingress) == []


@pytest.mark.parametrize("token", [TOKEN, OLD_TOKEN], ids=["new", "old"])
def test_every_configured_token_is_accepted(
    ingress: RunningIngress, redis_client: redis.Redis, token: str
) -> None:
    """Both tokens of a rotation are accepted."""
    assert post_structured(ingress.http, factories.suspended("C1"), token=token).status_code == 202


@pytest.mark.parametrize(
    "authorization",
    [
        None,  # no header
        "Bearer wrong-token",
        f"Bearer {TOKEN}x",  # a prefix of a real token is not the token
        f"Basic {TOKEN}",
        "Bearer",
        "Bearer tøken-ünicode".encode(),
    ],
)
def test_bad_or_missing_token_is_401_with_a_fixed_body(
    ingress: RunningIngress, redis_client: redis.Redis, authorization: str | bytes | None
) -> None:
    """Every token failure gets the same 401 body, and nothing is enqueued."""
    headers = {b"content-type": STRUCTURED.encode()}
    if authorization is not None:
        headers[b"authorization"] = (
            authorization if isinstance(authorization, bytes) else authorization.encode()
        )
    body = json.dumps(factories.suspended("C1")).encode()
    _assert_unauthorized(ingress, redis_client, "/events", body, headers)


@pytest.mark.parametrize(
    ("content_type", "route"),
    [
        ("text/plain", "/events"),
        (None, "/events"),
        ("application/xml", "/webhooks/stripe"),
        ("application/json; charset=latin-1", "/webhooks/crm"),
    ],
)
def test_wrong_content_type_is_415(
    ingress: RunningIngress, content_type: str | None, route: str
) -> None:
    """A media type the route does not read is refused with 415 naming it."""
    headers = {"authorization": f"Bearer {TOKEN}"}
    if content_type is not None:
        headers["content-type"] = content_type
    response = ingress.http.post(route, content=b"{}", headers=headers)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


def test_body_over_the_limit_is_413_even_without_content_length(ingress: RunningIngress) -> None:
    """A chunked body that grows past the limit is cut off with 413 while it streams."""

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1000

    headers = {"authorization": f"Bearer {TOKEN}", "content-type": STRUCTURED}
    response = ingress.http.post("/events", content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_declared_body_over_the_limit_is_413(ingress: RunningIngress) -> None:
    """A Content-Length over the limit is refused with 413."""
    body = json.dumps(crm_body(data={"reason": "x" * 5000})).encode()
    response = ingress.http.post("/webhooks/crm", content=body, headers=crm_headers(body))
    assert response.status_code == 413


# --- POST /webhooks/stripe -------------------------------------------------------------------


def test_stripe_invoice_paid_is_enqueued(
    ingress: RunningIngress, redis_client: redis.Redis
) -> None:
    """A signed invoice.paid becomes an invoice.paid event with credits from the price map."""
    obj = invoice("C9", "in_42", lines=(("price_basic", 2), ("price_topup", 1)))
    response = post_stripe(ingress.http, stripe_event("invoice.paid", obj, "evt_42"))
    assert response.status_code == 202
    [queued] = queue(redis_client, ingress)
    assert queued["type"] == "invoice.paid"
    assert queued["id"] == "evt_42"
    assert queued["source"] == "urn:subaccount-worker:stripe"
    assert queued["subject"] == "C9"
    assert queued["time"] == "2026-01-01T00:00:00Z"
    assert queued["data"] == {"invoice_id": "in_42", "credits": 2250}


def test_stripe_subscription_events_are_enqueued(
    ingress: RunningIngress, redis_client: redis.Redis
) -> None:
    """subscription.updated becomes plan.changed and subscription.deleted client.churned."""
    updated = subscription("C1", "week", credit_type="unlimited", recurring_credits="500")
    assert (
        post_stripe(
            ingress.http, stripe_event("customer.subscription.updated", updated, "evt_a")
        ).status_code
        == 202
    )
    deleted = stripe_event("customer.subscription.deleted", subscription("C1"), "evt_b")
    assert post_stripe(ingress.http, deleted).status_code == 202
    plan, churn = queue(redis_client, ingress)
    assert plan["type"] == "plan.changed"
    assert plan["data"] == {
        "credit_type": "unlimited",
        "recurring": {"amount": 500, "period": "weekly"},
    }
    assert churn["type"] == "client.churned"
    assert churn["data"]["reason"].startswith("Stripe subscription sub_1 deleted")


def test_stripe_several_v1_signatures_one_matching_is_accepted(
    ingress: RunningIngress, redis_client: redis.Redis
) -> None:
    """During Stripe's secret rotation one of several v1 signatures matches: accepted."""
    body = json.dumps(stripe_event("invoice.paid", invoice(credits="10"))).encode()
    t = int(time.time())
    good = sign_stripe(body, STRIPE_SECRET, t).split(",")[1]
    other = sign_stripe(body, "whsec_other", t).split(",")[1]
    header = f"t={t},{other},{good},v0=deadbeef"
    headers = {"content-type": JSON, "stripe-signature": header}
    response = ingress.http.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 202
    assert len(queue(redis_client, ingress)) == 1


def _stripe_forgeries() -> list[Any]:
    """Every way a Stripe signature can be wrong, as a headers-from-body function (timed late)."""
    return [
        pytest.param(lambda b: stripe_headers(b, secret="whsec_wrong"), id="wrong-secret"),
        pytest.param(lambda b: stripe_headers(b + b" "), id="tampered-body"),
        pytest.param(lambda b: stripe_headers(b, t=int(time.time()) - 310), id="too-old"),
        pytest.param(lambda b: stripe_headers(b, t=int(time.time()) + 310), id="too-new"),
        pytest.param(lambda b: {"content-type": JSON}, id="header-missing"),
        pytest.param(lambda b: {"content-type": JSON, "stripe-signature": "garbage"}, id="garbage"),
        pytest.param(
            lambda b: {**stripe_headers(b), "stripe-signature": f"t={int(time.time())}"}, id="no-v1"
        ),
    ]


@pytest.mark.parametrize("forge", _stripe_forgeries())
def test_stripe_bad_signature_is_401_with_a_fixed_body(
    ingress: RunningIngress, redis_client: redis.Redis, forge: Any
) -> None:
    """Wrong secret, tampered body, stale or future timestamp, no header: the same 401."""
    body = json.dumps(stripe_event("invoice.paid", invoice(credits="10"))).encode()
    _assert_unauthorized(ingress, redis_client, "/webhooks/stripe", body, forge(body))


def test_same_stripe_webhook_twice_enqueues_the_same_key(
    ingress: RunningIngress, redis_client: redis.Redis
) -> None:
    """A re-delivered Stripe event gets 202 twice with the same key and event id."""
    event = stripe_event("invoice.paid", invoice(credits="10"), "evt_dup")
    first, second = post_stripe(ingress.http, event), post_stripe(ingress.http, event)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    ids = {(e["source"], e["id"]) for e in queue(redis_client, ingress)}
    assert ids == {("urn:subaccount-worker:stripe", "evt_dup")}


def test_stripe_paid_and_payment_succeeded_carry_the_same_invoice(
    ingress: RunningIngress, redis_client: redis.Redis
) -> None:
    """Stripe's two notices of one payment both map to invoice.paid of the same invoice id."""
    obj = invoice(credits="10", invoice_id="in_7")
    post_stripe(ingress.http, stripe_event("invoice.paid", obj, "evt_1"))
    post_stripe(ingress.http, stripe_event("invoice.payment_succeeded", obj, "evt_2"))
    queued = queue(redis_client, ingress)
    assert [e["type"] for e in queued] == ["invoice.paid", "invoice.paid"]
    assert {e["data"]["invoice_id"] for e in queued} == {"in_7"}


def test_unmapped_stripe_type_is_acknowledged_and_ignored(
    ingress: RunningIngress, redis_client: redis.Redis
) -> None:
    """A Stripe type with no catalogue event is answered 200 and nothing is enqueued."""
    response = post_stripe(ingress.http, stripe_event("customer.created", {"id": "cus_1"}))
    assert response.status_code == 200
    assert response.json()["accepted"] == []
    assert "customer.created" in response.json()["ignored"]
    assert queue(redis_client, ingress) == []


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (invoice(client_id=None, credits="10"), "data.object.metadata.client_id"),
        (invoice(lines=(("price_unknown", 3),)), "data.object.metadata.credits"),
        (invoice(client_id="has space", credits="10"), "data.object.metadata.client_id"),
    ],
    ids=["no-client-id", "no-credits", "client-id-not-catalogue-shaped"],
)
def test_unmappable_stripe_invoice_is_422(
    ingress: RunningIngress, redis_client: redis.Redis, obj: dict[str, Any], field: str
) -> None:
    """An invoice without a usable client id, or without findable credits, is 422 naming why."""
    response = post_stripe(ingress.http, stripe_event("invoice.paid", obj))
    assert response.status_code == 422
    assert response.json()["reasons"][0].startswith(field)
    assert queue(redis_client, ingress) == []


# --- POST /webhooks/crm ----------------------------------------------------------------------


def test_crm_webhook_is_enqueued(ingress: RunningIngress, redis_client: redis.Redis) -> None:
    """A signed CRM onboarding becomes client.onboarded with the webhook id as its id."""
    data = {"email": "c7@example.com", "credit_type": "unlimited"}
    response = post_crm(ingress.http, crm_body("client.onboarded", "C7", data), "msg_7")
    assert response.status_code == 202
    [queued] = queue(redis_client, ingress)
    assert queued["type"] == "client.onboarded"
    assert (queued["source"], queued["id"]) == ("urn:subaccount-worker:crm", "msg_7")
    assert queued["subject"] == "C7"
    assert queued["data"] == data


def test_crm_old_secret_is_valid_during_rotation(
    ingress: RunningIngress, redis_client: redis.Redis
) -> None:
    """A webhook signed with the previous secret is still accepted while both are configured."""
    body = json.dumps(crm_body()).encode()
    headers = crm_headers(body, secret=OLD_CRM_SECRET)
    assert ingress.http.post("/webhooks/crm", content=body, headers=headers).status_code == 202
    assert len(queue(redis_client, ingress)) == 1


def test_crm_several_signatures_one_matching_is_accepted(
    ingress: RunningIngress, redis_client: redis.Redis
) -> None:
    """A signature header listing an unknown signature beside a valid one is accepted."""
    body = json.dumps(crm_body()).encode()
    headers = crm_headers(body)
    headers["webhook-signature"] = "v1,AAAA v1a,xyz " + headers["webhook-signature"]
    assert ingress.http.post("/webhooks/crm", content=body, headers=headers).status_code == 202


def _crm_forgeries() -> list[Any]:
    """Every way a Standard Webhooks signature can be wrong, as a headers-from-body function."""
    other = "whsec_" + "c2VjcmV0LW5vYm9keS1jb25maWd1cmVk"
    return [
        pytest.param(lambda b: crm_headers(b, secret=other), id="wrong-secret"),
        pytest.param(lambda b: crm_headers(b + b" "), id="tampered-body"),
        pytest.param(lambda b: {**crm_headers(b), "webhook-id": "msg_other"}, id="other-id"),
        pytest.param(lambda b: crm_headers(b, t=int(time.time()) - 310), id="too-old"),
        pytest.param(lambda b: crm_headers(b, t=int(time.time()) + 310), id="too-new"),
        pytest.param(
            lambda b: {k: v for k, v in crm_headers(b).items() if k != "webhook-signature"},
            id="signature-missing",
        ),
        pytest.param(lambda b: {**crm_headers(b), "webhook-timestamp": "soon"}, id="bad-time"),
        pytest.param(lambda b: {**crm_headers(b), "webhook-signature": "v1"}, id="garbage"),
    ]


@pytest.mark.parametrize("forge", _crm_forgeries())
def test_crm_bad_signature_is_401_with_a_fixed_body(
    ingress: RunningIngress, redis_client: redis.Redis, forge: Any
) -> None:
    """Wrong secret, tampered body or id, stale or future timestamp, missing header: one 401."""
    body = json.dumps(crm_body()).encode()
    _assert_unauthorized(ingress, redis_client, "/webhooks/crm", body, forge(body))


def test_same_crm_webhook_twice_enqueues_the_same_key(
    ingress: RunningIngress, redis_client: redis.Redis
) -> None:
    """A re-delivered CRM webhook (same webhook-id) gets 202 twice with the same key."""
    doc = crm_body("client.reactivated")
    first, second = post_crm(ingress.http, doc, "msg_dup"), post_crm(ingress.http, doc, "msg_dup")
    assert first.status_code == second.status_code == 202
    assert first.json()["accepted"][0]["key"] == second.json()["accepted"][0]["key"]
    assert {e["id"] for e in queue(redis_client, ingress)} == {"msg_dup"}


@pytest.mark.parametrize(
    ("doc", "status", "field"),
    [
        (crm_body("invoice.paid", data={"invoice_id": "i", "credits": 1}), 422, "type"),
        (crm_body("plan.changed", data={"credit_type": "unlimited"}), 422, "type"),
        (crm_body("client.updated", data={"email": "nope"}), 400, "data.email"),
        ({"type": "client.suspended", "occurred_at": "2026-01-01T00:00:00Z"}, 400, "client_id"),
        (crm_body(occurred_at="Monday"), 400, "occurred_at"),
    ],
    ids=["invoice-paid", "plan-changed", "bad-email", "no-client-id", "bad-time"],
)
def test_crm_body_problems_name_the_crm_field(
    ingress: RunningIngress, redis_client: redis.Redis, doc: dict[str, Any], status: int, field: str
) -> None:
    """Types the CRM may not send are 422; invalid fields are 400 named as the CRM names them."""
    response = post_crm(ingress.http, doc)
    assert response.status_code == status
    assert [r.split(":")[0] for r in response.json()["reasons"]] == [field]
    assert queue(redis_client, ingress) == []


def test_refusals_are_logged_with_source_and_reason_but_no_secret(
    ingress: RunningIngress, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forged token or signature is logged with its source and reason only."""
    body = json.dumps(stripe_event("invoice.paid", invoice(credits="10"))).encode()
    forged = stripe_headers(body, secret=STRIPE_SECRET + "x")
    with structlog.testing.capture_logs() as logs:
        monkeypatch.setattr(worker.ingress.app, "log", structlog.get_logger("ingress-test"))
        post_structured(ingress.http, factories.suspended("C1"), token=TOKEN + "x")
        ingress.http.post("/webhooks/stripe", content=body, headers=forged)
    refusals = [e for e in logs if e["event"] == "ingress.unauthorized"]
    assert [(e["source"], e["reason"]) for e in refusals] == [
        ("events", "unknown bearer token"),
        ("stripe", "no v1 signature matches"),
    ]
    dumped = json.dumps(logs, default=str)
    for secret in (TOKEN, STRIPE_SECRET, forged["stripe-signature"].split("v1=")[1]):
        assert secret not in dumped


# --- health, metrics, schema -----------------------------------------------------------------


def test_health_and_readiness(ingress: RunningIngress) -> None:
    """/healthz and /readyz answer 200 while Redis is up."""
    assert ingress.http.get("/healthz").json() == {"status": "alive"}
    assert ingress.http.get("/readyz").json() == {"status": "ready"}


def test_unknown_route_and_method_use_the_problem_shape(ingress: RunningIngress) -> None:
    """404 and 405 answer with the same JSON shape as every other refusal."""
    missing = ingress.http.get("/nowhere")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    wrong = ingress.http.get("/events")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST"


def test_metrics_count_requests_and_time_enqueues(redis_url: str) -> None:
    """/metrics shows requests by route and status and the enqueue histogram of this app only."""
    with running_ingress(ingress_settings(redis_url)) as app:
        post_structured(app.http, factories.suspended("C1"))
        post_structured(app.http, factories.suspended("C1"), token="wrong")
        app.http.get("/nowhere/at/all")
        text = app.http.get("/metrics").text
    requests = "saw_ingress_requests_total"
    assert f'{requests}{{route="/events",status="202"}} 1.0' in text
    assert f'{requests}{{route="/events",status="401"}} 1.0' in text
    assert f'{requests}{{route="other",status="404"}} 1.0' in text
    assert 'saw_ingress_enqueue_seconds_count{route="/events"} 1.0' in text


def test_openapi_documents_every_route_and_answer(ingress: RunningIngress) -> None:
    """/openapi.json lists every route with its bodies and each status this module observes."""
    document = ingress.http.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    routes = {getattr(route, "path", None) for route in ingress.app.routes}
    assert set(document["paths"]) == routes
    observed = {
        ("/events", "post"): {"202", "400", "401", "413", "415"},
        ("/webhooks/stripe", "post"): {"200", "202", "401", "415", "422"},
        ("/webhooks/crm", "post"): {"202", "400", "401", "413", "415", "422"},
        ("/readyz", "get"): {"200", "503"},
    }
    for (path, method), statuses in observed.items():
        assert statuses <= set(document["paths"][path][method]["responses"]), path
    content = document["paths"]["/events"]["post"]["requestBody"]["content"]
    assert set(content) == {STRUCTURED, BATCH, JSON}
    schemas = document["components"]["schemas"]
    assert "ClientOnboarded" in schemas
    assert set(schemas["Problem"]["properties"]["error"]["enum"]) >= {
        "malformed",
        "unauthorized",
        "too_large",
        "unsupported_media_type",
        "unmappable",
        "unavailable",
    }


def test_concurrent_webhooks_are_each_enqueued_once(
    ingress: RunningIngress, redis_client: redis.Redis
) -> None:
    """Fifty webhooks at once (committed together in groups) all get 202 and all are queued."""

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=ingress.url, timeout=10.0) as client:
            sends = []
            for i in range(50):
                body = json.dumps(stripe_event("invoice.paid", invoice(credits="5"), f"evt_c{i}"))
                raw = body.encode()
                sends.append(
                    client.post("/webhooks/stripe", content=raw, headers=stripe_headers(raw))
                )
            return list(await asyncio.gather(*sends))

    responses = asyncio.run(burst())
    assert {r.status_code for r in responses} == {202}
    accepted = [r.json()["accepted"][0]["id"] for r in responses]
    assert accepted == [f"evt_c{i}" for i in range(50)]
    assert sorted(e["id"] for e in queue(redis_client, ingress)) == sorted(accepted)
