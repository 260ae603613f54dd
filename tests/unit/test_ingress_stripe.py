"""Stripe: the signature scheme (as Stripe documents it) and the mapping onto the catalogue."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from handlers.events import parse_event
from tests.ingress_support import (
    PRICE_CREDITS,
    invoice,
    stripe_event,
    subscription,
)
from worker.ingress.mapping import Ignored
from worker.ingress.problems import Malformed, Unauthorized, Unmappable
from worker.ingress.stripe import map_stripe, sign_stripe, verify_stripe

SECRET = "whsec_unit"
BODY = b'{"id": "evt_1"}'
NOW = 1_767_225_600


def test_signature_is_hmac_sha256_of_timestamp_dot_payload() -> None:
    """The v1 signature is hex HMAC-SHA256 over '<t>.<body>' keyed with the whole secret."""
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign_stripe(BODY, SECRET, NOW) == f"t={NOW},v1={expected}"


def verifies(header: str) -> bool:
    """Whether `verify_stripe` accepts `header` for BODY at NOW (a refusal raises Unauthorized)."""
    try:
        verify_stripe(BODY, header, SECRET, 300, NOW)
    except Unauthorized:
        return False
    return True


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_signature_within_tolerance_verifies(skew: int) -> None:
    """A timestamp up to the tolerance away from now, either way, verifies."""
    assert verifies(sign_stripe(BODY, SECRET, NOW + skew))


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (None, "Stripe-Signature header missing"),
        ("", "Stripe-Signature header missing"),
        (f"v1={'0' * 64}", "Stripe-Signature header has no t or no v1"),
        (f"t={NOW}", "Stripe-Signature header has no t or no v1"),
        (f"t=-{NOW},v1=x", "Stripe-Signature header has no t or no v1"),
        ("t=１２,v1=x", "Stripe-Signature header has no t or no v1"),  # noqa: RUF001 (fullwidth digits)
        (f"t={NOW},v1={'0' * 64}", "no v1 signature matches"),
        (sign_stripe(BODY, SECRET, NOW - 301), "timestamp outside the tolerance"),
        (sign_stripe(BODY, SECRET, NOW + 301), "timestamp outside the tolerance"),
        (sign_stripe(BODY, "whsec_other", NOW), "no v1 signature matches"),
        (
            sign_stripe(BODY, SECRET, NOW).replace("v1=", "v0="),
            "Stripe-Signature header has no t or no v1",
        ),
    ],
)
def test_bad_signatures_are_refused_with_a_logged_reason(header: str | None, why: str) -> None:
    """Each way a header can be wrong raises Unauthorized whose (logged) reason says which."""
    with pytest.raises(Unauthorized) as caught:
        verify_stripe(BODY, header, SECRET, 300, NOW)
    assert caught.value.why == why
    assert caught.value.source == "stripe"


def test_no_secret_configured_refuses_everything() -> None:
    """Without a configured secret even a header signed with the empty secret is refused."""
    with pytest.raises(Unauthorized):
        verify_stripe(BODY, sign_stripe(BODY, "", NOW), "", 300, NOW)


def test_one_matching_v1_among_several_verifies() -> None:
    """Stripe sends one v1 per active secret while rotating; any one matching is enough."""
    good = sign_stripe(BODY, SECRET, NOW).split(",")[1]
    assert verifies(f"t={NOW}, v1={'a' * 64}, {good}, v1=zz")
    assert not verifies(f"t={NOW}, v1={'a' * 64}, v1=zz")  # it was the matching one that counted


def mapped(event: dict[str, Any]) -> dict[str, Any]:
    """The mapped event, checked to be one the catalogue accepts."""
    result = map_stripe(event, PRICE_CREDITS)
    assert isinstance(result, dict)
    parse_event(result)
    return result


@pytest.mark.parametrize(
    ("obj", "credits"),
    [
        (invoice(credits="700"), 700),  # metadata wins over the price map
        (invoice(credits="700", lines=(("price_basic", 1),)), 700),
        (invoice(lines=(("price_basic", 2),)), 2000),  # quantity x credits of the price
        (invoice(lines=(("price_basic", 1), ("price_topup", 3), ("price_other", 9))), 1750),
    ],
)
def test_invoice_credits_come_from_metadata_else_the_price_map(
    obj: dict[str, Any], credits: int
) -> None:
    """invoice.paid takes metadata.credits, else sums quantity x credits over known prices."""
    event = mapped(stripe_event("invoice.paid", obj, "evt_9", created=NOW))
    assert event["type"] == "invoice.paid"
    assert (event["id"], event["source"]) == ("evt_9", "urn:subaccount-worker:stripe")
    assert event["time"] == "2026-01-01T00:00:00Z"
    assert event["data"] == {"invoice_id": "in_1", "credits": credits}


def test_newer_api_line_items_name_their_price_under_pricing() -> None:
    """Since API 2025-03-31 a line's price id is at pricing.price_details.price."""
    obj = invoice()
    obj["lines"]["data"] = [
        {"pricing": {"price_details": {"price": "price_topup"}}, "quantity": 4},
        {"price": "price_basic", "quantity": None},  # a bare id, quantity unknown: one
    ]
    assert mapped(stripe_event("invoice.paid", obj))["data"]["credits"] == 2000


def test_invoice_client_id_may_come_from_the_subscription_details() -> None:
    """An invoice without its own client_id uses the subscription metadata Stripe copied onto it."""
    obj = invoice(client_id=None, credits="5")
    obj["parent"] = {"subscription_details": {"metadata": {"client_id": "C5"}}}
    assert mapped(stripe_event("invoice.payment_succeeded", obj))["subject"] == "C5"


@pytest.mark.parametrize(
    ("metadata", "interval", "data"),
    [
        ({"credit_type": "unlimited"}, "month", {"credit_type": "unlimited"}),
        ({"recurring_credits": "100"}, "day", {"recurring": {"amount": 100, "period": "daily"}}),
        ({"recurring_credits": "0"}, "week", {"recurring": {"amount": 0, "period": "weekly"}}),
        (
            {"credit_type": "one_time_credit", "recurring_credits": "5"},
            "month",
            {"credit_type": "one_time_credit", "recurring": {"amount": 5, "period": "monthly"}},
        ),
    ],
)
def test_subscription_updated_maps_to_plan_changed(
    metadata: dict[str, str], interval: str, data: dict[str, Any]
) -> None:
    """metadata.credit_type and metadata.recurring_credits per price interval make plan.changed."""
    obj = subscription("C1", interval, **metadata)
    event = mapped(stripe_event("customer.subscription.updated", obj))
    assert event["type"] == "plan.changed"
    assert event["data"] == data


def test_subscription_deleted_maps_to_churned_with_the_cancellation_reason() -> None:
    """subscription.deleted becomes client.churned naming the subscription and Stripe's reason."""
    obj = subscription("C1")
    obj["cancellation_details"] = {"reason": "payment_failed"}
    event = mapped(stripe_event("customer.subscription.deleted", obj))
    assert event["type"] == "client.churned"
    assert event["data"] == {"reason": "Stripe subscription sub_1 deleted: payment_failed"}


@pytest.mark.parametrize("type_", ["customer.created", "charge.succeeded", "invoice.created"])
def test_other_stripe_types_are_ignored(type_: str) -> None:
    """Types with no catalogue meaning map to Ignored naming the type (even without data)."""
    result = map_stripe({"id": "evt_1", "type": type_, "created": NOW}, PRICE_CREDITS)
    assert isinstance(result, Ignored)
    assert type_ in result.reason


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (
            stripe_event("invoice.paid", invoice(client_id=None, credits="1")),
            "data.object.metadata.client_id",
        ),
        (stripe_event("invoice.paid", invoice(credits="-3")), "data.object.metadata.credits"),
        (stripe_event("invoice.paid", invoice(credits="1.5")), "data.object.metadata.credits"),
        (stripe_event("invoice.paid", invoice()), "data.object.metadata.credits"),
        (stripe_event("customer.subscription.updated", subscription()), "data.object.metadata"),
        (
            stripe_event(
                "customer.subscription.updated",
                subscription(interval="year", recurring_credits="5"),
            ),
            "data.object.items.data[0].price.recurring",
        ),
        (
            stripe_event("customer.subscription.updated", subscription(recurring_credits="many")),
            "data.object.metadata.recurring_credits",
        ),
    ],
    ids=["no-client", "negative-credits", "fraction", "no-credits", "no-plan", "yearly", "nan"],
)
def test_unmappable_stripe_events_name_the_stripe_field(event: dict[str, Any], reason: str) -> None:
    """Stripe events that cannot become a catalogue event raise 422 naming the Stripe field."""
    with pytest.raises(Unmappable) as caught:
        map_stripe(event, PRICE_CREDITS)
    assert caught.value.reasons[0].split(": ")[0] == reason


@pytest.mark.parametrize(
    ("doc", "fields"),
    [
        ([], ["body"]),
        ({}, ["id", "type", "created"]),
        ({"id": "evt", "type": "invoice.paid", "created": True}, ["created"]),
        ({"id": "evt", "type": "invoice.paid", "created": 10**20}, ["created"]),
        ({"id": "evt", "type": "invoice.paid", "created": NOW, "data": []}, ["data.object"]),
    ],
)
def test_malformed_stripe_events_are_400(doc: Any, fields: list[str]) -> None:
    """Events without Stripe's own envelope fields raise 400 naming each."""
    with pytest.raises(Malformed) as caught:
        map_stripe(doc, PRICE_CREDITS)
    assert [r.split(":")[0] for r in caught.value.reasons] == fields
