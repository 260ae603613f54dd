"""Webhooks in, subaccount calls out: the ingress and a worker, over real HTTP and Redis."""

from __future__ import annotations

import pytest
import redis

from handlers import examples as f
from handlers import username_for
from tests.ingress_support import (
    crm_body,
    ingress_settings,
    invoice,
    post_crm,
    post_stripe,
    post_structured,
    running_ingress,
    stripe_event,
)
from tests.pipeline_support import wait_for_outcomes
from worker.runtime import Runtime
from worker.sandbox import SandboxAdmin

pytestmark = pytest.mark.e2e


def test_each_route_reaches_the_sandbox_once(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis, redis_url: str
) -> None:
    """CRM onboarding, two Stripe reports of one invoice and a CloudEvent suspension, with the
    CRM webhook delivered twice: each effect happens exactly once."""
    onboard = crm_body(
        "client.onboarded", "C9", {"email": "c9@example.com", "credit_type": "one_time_credit",
                                   "credits": 100},
    )  # fmt: skip
    paid = invoice(client_id="C9", invoice_id="in_9", credits="40")
    suspend = f.suspended("C9", t=3600 * 24 * 400)
    with running_ingress(ingress_settings(redis_url, key_prefix="saw")) as ingress:
        for _ in range(2):  # the CRM retries its webhook
            assert post_crm(ingress.http, onboard, webhook_id="msg_onboard").status_code == 202
        for event_id, kind in [("evt_a", "invoice.paid"), ("evt_b", "invoice.payment_succeeded")]:
            response = post_stripe(ingress.http, stripe_event(kind, paid, event_id=event_id))
            assert response.status_code == 202
        assert post_structured(ingress.http, suspend).status_code == 202
    found = wait_for_outcomes(redis_client, ["msg_onboard", "evt_a", "evt_b", suspend["id"]])
    assert {found["evt_a"]["outcome"], found["evt_b"]["outcome"]} == {"applied", "duplicate"}
    applied = [
        (e["operation"], e["amount"])
        for e in sandbox.journal(username=username_for("C9"))
        if e["applied"]
    ]
    # The invoice and the suspension both waited for the onboarding; they commute.
    assert applied[:2] == [("create", None), ("add_credits", 100)]
    assert sorted(applied[2:], key=str) == [("add_credits", 40), ("disable", None)]
