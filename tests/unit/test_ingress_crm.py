"""CRM: Standard Webhooks verification (interoperable with the reference package) and mapping."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook
from starlette.datastructures import Headers

from handlers.events import parse_event
from tests.ingress_support import CRM_SECRET, OLD_CRM_SECRET, crm_body
from worker.errors import ConfigError
from worker.ingress.crm import CrmSignatures, decode_secret, map_crm, sign_crm
from worker.ingress.problems import Malformed, Problem, Unauthorized, Unmappable

BODY = b'{"type": "client.suspended"}'
NOW = 1_767_225_600


def headers(signature: str, webhook_id: str = "msg_1", t: int = NOW) -> Headers:
    return Headers(
        {"webhook-id": webhook_id, "webhook-timestamp": str(t), "webhook-signature": signature}
    )


def verifier(*secrets: str) -> CrmSignatures:
    return CrmSignatures([SecretStr(s) for s in secrets])


def test_signatures_of_the_reference_package_verify() -> None:
    """A signature made by the `standardwebhooks` package verifies here."""
    reference = Webhook(CRM_SECRET).sign(
        "msg_1", dt.datetime.fromtimestamp(NOW, dt.UTC), BODY.decode()
    )
    assert verifier(CRM_SECRET).verify(BODY, headers(reference), NOW) == "msg_1"


def test_our_signatures_verify_with_the_reference_package() -> None:
    """`sign_crm` produces what the `standardwebhooks` package accepts."""
    now = int(dt.datetime.now(dt.UTC).timestamp())
    signature = sign_crm(BODY, CRM_SECRET, "msg_2", now)
    wire = {"webhook-id": "msg_2", "webhook-timestamp": str(now), "webhook-signature": signature}
    assert Webhook(CRM_SECRET).verify(BODY, wire) == {"type": "client.suspended"}


@pytest.mark.parametrize("signer", [CRM_SECRET, OLD_CRM_SECRET], ids=["new", "old"])
def test_any_configured_secret_verifies_during_rotation(signer: str) -> None:
    """With old and new secrets configured, a signature by either verifies."""
    signature = sign_crm(BODY, signer, "msg_1", NOW)
    assert verifier(CRM_SECRET, OLD_CRM_SECRET).verify(BODY, headers(signature), NOW) == "msg_1"


def test_a_retired_secret_no_longer_verifies() -> None:
    """Once the old secret is removed from the settings its signatures are refused."""
    signature = sign_crm(BODY, OLD_CRM_SECRET, "msg_1", NOW)
    with pytest.raises(Unauthorized) as caught:
        verifier(CRM_SECRET).verify(BODY, headers(signature), NOW)
    assert caught.value.why == "no v1 signature matches a configured secret"


def test_secret_without_prefix_is_the_same_key() -> None:
    """`whsec_` is optional: the key is the base64 after it."""
    assert decode_secret(CRM_SECRET) == decode_secret(CRM_SECRET.removeprefix("whsec_"))


@pytest.mark.parametrize("secret", ["whsec_", "whsec_!!not base64!!", "whsec_===="])
def test_malformed_secret_is_a_config_error_without_the_value(secret: str) -> None:
    """A secret that is not base64 fails at startup naming the variable, not the value."""
    with pytest.raises(ConfigError) as caught:
        verifier(secret)
    assert (
        str(caught.value) == "SUBACCOUNT_WORKER_CRM_WEBHOOK_SECRETS: each secret is whsec_ + base64"
    )


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (Headers({}), "a webhook-id/-timestamp/-signature header is missing"),
        (headers("v1,x"), "no v1 signature matches a configured secret"),
        (
            headers("v2," + sign_crm(BODY, CRM_SECRET, "msg_1", NOW)[3:]),
            "no v1 signature matches a configured secret",
        ),
        (
            headers(sign_crm(BODY, CRM_SECRET, "msg_1", NOW - 301), t=NOW - 301),
            "timestamp outside the tolerance",
        ),
        (
            headers(sign_crm(BODY, CRM_SECRET, "msg_1", NOW + 301), t=NOW + 301),
            "timestamp outside the tolerance",
        ),
        (
            Headers({"webhook-id": "m", "webhook-timestamp": "1.5", "webhook-signature": "v1,x"}),
            "webhook-timestamp is not unix seconds",
        ),
    ],
)
def test_bad_signatures_are_refused_with_a_logged_reason(wire: Any, why: str) -> None:
    """Each way the headers can be wrong raises Unauthorized whose (logged) reason says which."""
    with pytest.raises(Unauthorized) as caught:
        verifier(CRM_SECRET).verify(BODY, wire, NOW)
    assert caught.value.why == why


def test_no_secrets_configured_refuses_everything() -> None:
    """Without configured secrets every delivery is refused."""
    with pytest.raises(Unauthorized):
        verifier().verify(BODY, headers(sign_crm(BODY, CRM_SECRET, "msg_1", NOW)), NOW)


@pytest.mark.parametrize(
    ("type_", "data"),
    [
        ("client.onboarded", {"email": "a@example.com", "credit_type": "unlimited"}),
        ("client.updated", {"credit_type": "one_time_credit"}),
        ("client.suspended", {"reason": "unpaid"}),
        ("client.reactivated", None),
        ("client.churned", {}),
    ],
)
def test_the_five_crm_types_map_to_the_same_catalogue_type(
    type_: str, data: dict[str, Any] | None
) -> None:
    """Each CRM type maps onto its catalogue event: id = webhook-id, subject = client_id."""
    event = map_crm(crm_body(type_, "C3", data, "2026-02-01T10:00:00+01:00"), "msg_9")
    parsed = parse_event(event)
    assert (parsed.type, parsed.id, parsed.subject) == (type_, "msg_9", "C3")
    assert parsed.source == "urn:subaccount-worker:crm"
    assert parsed.time == dt.datetime(2026, 2, 1, 9, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("doc", "problem", "field"),
    [
        ([], Malformed, "body"),
        ({"client_id": "C1"}, Malformed, "type"),
        ({"type": 5}, Malformed, "type"),
        (crm_body("invoice.paid"), Unmappable, "type"),
        (crm_body("plan.changed"), Unmappable, "type"),
        (crm_body("client.exploded"), Unmappable, "type"),
    ],
)
def test_bodies_that_map_to_nothing(doc: Any, problem: type[Problem], field: str) -> None:
    """Non-objects and missing types are 400; types the CRM may not send are 422."""
    with pytest.raises(problem) as caught:
        map_crm(doc, "msg_1")
    assert [r.split(":")[0] for r in caught.value.reasons] == [field]
