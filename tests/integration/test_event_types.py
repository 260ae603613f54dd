"""Strict event types and the credits cap hold at every door: /events, the CRM webhook, consume.

`send` is covered with the other command-line tests (`test_cli_send.py`), as a subprocess.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis

from handlers import examples as factories
from tests.conftest import TEST_API_KEY
from tests.ingress_support import (
    STRUCTURED,
    RunningIngress,
    bearer,
    binary_headers,
    crm_body,
    ingress_settings,
    post_batch,
    post_crm,
    post_structured,
    queued_events,
    running_ingress,
)
from tests.pipeline_support import outcomes, pipeline_settings, running_pipeline
from tests.servers import RedisServer, ThreadedUvicorn, wait_until
from worker.runtime import Runtime
from worker.sandbox import SandboxAdmin

CAP = 1000


@pytest.fixture(scope="module")
def ingress(redis_server: RedisServer) -> Iterator[RunningIngress]:
    """An ingress whose cap is 1000 credits per grant."""
    settings = ingress_settings(redis_server.url, max_credits_per_grant=CAP)
    with running_ingress(settings) as app:
        yield app


# Rows: (data of an invoice.paid, the field the 400 must name)
LOOSE_INVOICES = [
    ({"invoice_id": "INV-1", "credits": True}, "data.credits"),
    ({"invoice_id": "INV-1", "credits": "100"}, "data.credits"),
    ({"invoice_id": "INV-1", "credits": 100.0}, "data.credits"),
    ({"invoice_id": "INV-1", "credits": " 100 "}, "data.credits"),
    ({"invoice_id": "INV-1", "credits": CAP + 1}, "data.credits"),  # over this ingress's cap
    ({"invoice_id": 1, "credits": 100}, "data.invoice_id"),
]


@pytest.mark.parametrize(("data", "field"), LOOSE_INVOICES)
def test_events_refuses_loose_types_and_credits_over_the_cap(
    ingress: RunningIngress, redis_client: redis.Redis, data: dict[str, Any], field: str
) -> None:
    """POST /events (structured, batch, binary) answers 400 naming the field; nothing queued."""
    event = factories.event("invoice.paid", "C1", data)
    structured = post_structured(ingress.http, event)
    batch = post_batch(ingress.http, [factories.suspended("C1"), event])
    binary = ingress.http.post("/events", content=json.dumps(data), headers=binary_headers(event))
    assert [r.status_code for r in (structured, batch, binary)] == [400, 400, 400]
    assert [r.partition(":")[0] for r in structured.json()["reasons"]] == [field]
    assert [r.partition(":")[0] for r in batch.json()["reasons"]] == [f"[1] {field}"]
    assert [r.partition(":")[0] for r in binary.json()["reasons"]] == [
        field.replace("data", "body")
    ]
    assert queued_events(redis_client, ingress.settings) == []


def test_events_refuses_1e2_written_as_json(
    ingress: RunningIngress, redis_client: redis.Redis
) -> None:
    """`1e2` in the body's text is a JSON decimal, refused like 100.0."""
    text = json.dumps(factories.invoice_paid("C1", "INV-1", 7))
    body = text.replace('"credits": 7', '"credits": 1e2')
    assert "1e2" in body
    headers = {**bearer(), "content-type": STRUCTURED}
    response = ingress.http.post("/events", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["reasons"][0].startswith("data.credits: must be a JSON integer")
    assert queued_events(redis_client, ingress.settings) == []


# Rows: (data of a CRM client.onboarded, the field the 400 must name)
LOOSE_CRM = [
    ({"email": "a@b.co", "credit_type": "unlimited", "credits": "100"}, "data.credits"),
    ({"email": "a@b.co", "credit_type": "unlimited", "credits": True}, "data.credits"),
    ({"email": "a@b.co", "credit_type": "unlimited", "credits": CAP + 1}, "data.credits"),
    (
        {"email": "a@b.co", "credit_type": "unlimited",
         "recurring": {"amount": 5, "period": "daily", "end_date": 0}},
        "data.recurring.end_date",
    ),
    (
        {"email": "a@b.co", "credit_type": "unlimited",
         "recurring": {"amount": 5, "period": "daily", "active": "yes"}},
        "data.recurring.active",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("data", "field"), LOOSE_CRM)
def test_crm_webhook_refuses_loose_types(
    ingress: RunningIngress, redis_client: redis.Redis, data: dict[str, Any], field: str
) -> None:
    """A correctly signed CRM webhook with a loose value gets 400 naming the field."""
    response = post_crm(ingress.http, crm_body("client.onboarded", "C1", data))
    assert response.status_code == 400
    assert [r.partition(":")[0] for r in response.json()["reasons"]] == [field]
    assert queued_events(redis_client, ingress.settings) == []


def test_crm_webhook_accepts_strict_values(
    ingress: RunningIngress, redis_client: redis.Redis
) -> None:
    """The control: the same webhook with JSON integers, ISO dates and booleans is accepted."""
    data = {
        "email": "a@b.co",
        "credit_type": "unlimited",
        "credits": CAP,
        "recurring": {"amount": 5, "period": "daily", "end_date": "2027-01-01", "active": True},
    }
    response = post_crm(ingress.http, crm_body("client.onboarded", "C1", data))
    assert response.status_code == 202, response.text
    [queued] = queued_events(redis_client, ingress.settings)
    assert queued["data"] == data


@pytest.fixture
def capped_pipeline(
    redis_url: str, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> Iterator[Runtime]:
    """A worker whose cap is 1000 credits per grant."""
    settings = pipeline_settings(
        redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY, max_credits_per_grant=CAP
    )
    with running_pipeline(settings) as runtime:
        yield runtime


def test_the_worker_applies_the_door_rules_on_consume(
    capped_pipeline: Runtime, redis_client: redis.Redis, sandbox: SandboxAdmin
) -> None:
    """Messages that skipped the door (over the cap, a string amount) are dead-lettered
    `invalid_event` naming the field; nothing is granted."""
    bad = [
        factories.invoice_paid("C1", "INV-1", CAP + 1),
        factories.invoice_paid("C1", "INV-2", "100"),  # type: ignore[arg-type]
    ]
    messages = [
        dramatiq.Message(
            queue_name=capped_pipeline.settings.queue_name, actor_name="process_event",
            args=(event,), kwargs={}, options={"redis_message_id": f"m-{i}"},
        )
        for i, event in enumerate(bad)
    ]  # fmt: skip
    capped_pipeline.publisher.enqueue_messages(messages)
    wait_until(lambda: len(outcomes(redis_client)) == 2, what="two outcomes")
    letters = {letter.event["id"]: letter for letter in capped_pipeline.dead_letters.list()}
    assert {letter.reason for letter in letters.values()} == {"invalid_event"}
    assert "data.credits: 1001 is above the maximum of 1000" in letters[bad[0]["id"]].detail
    assert "data.credits: must be a JSON integer" in letters[bad[1]["id"]].detail
    assert [e for e in sandbox.journal() if e["applied"]] == []
