"""Credit notifications: the Standard Webhooks envelope, its signature, and the settings check."""

from __future__ import annotations

import json

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.credits_support import NOTIFY_SECRET
from worker.credits.notify import (
    Notification,
    NotificationType,
    check_notify_settings,
    signed_headers,
)
from worker.errors import ConfigError
from worker.settings import load_settings

NOTE = Notification.make(NotificationType.CREDITS_LOW, 1_800_000_000.0, {"alert_id": "cl_1"}, "x")


def test_a_notification_verifies_with_the_standardwebhooks_package() -> None:
    """What we sign is what a receiver using the reference package accepts (and only that)."""
    body = NOTE.body()
    headers = signed_headers(NOTIFY_SECRET, NOTE, body)
    payload = Webhook(NOTIFY_SECRET).verify(body, headers)
    assert payload == {
        "type": "subaccount.credits_low",
        "timestamp": "2027-01-15T08:00:00Z",
        "data": {"alert_id": "cl_1"},
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(NOTIFY_SECRET).verify(body.replace("cl_1", "cl_2"), headers)


def test_the_id_is_stable_for_the_same_parts_and_survives_the_queue() -> None:
    again = Notification.make(NotificationType.CREDITS_LOW, 1.0, {}, "x")
    other = Notification.make(NotificationType.CREDITS_LOW, 1.0, {}, "y")
    assert again.id == NOTE.id != other.id
    assert Notification.from_message(json.loads(json.dumps(NOTE.to_message()))) == NOTE


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"notify_url": "https://hooks.example/x"}, "NOTIFY_SECRET is required"),
        ({"notify_url": "https://hooks.example/x", "notify_secret": "whsec_"}, "must be whsec_"),
    ],
)
def test_a_webhook_needs_a_usable_secret(overrides: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        check_notify_settings(load_settings(**overrides))


def test_no_webhook_needs_no_secret() -> None:
    check_notify_settings(load_settings())
    assert NOTIFY_SECRET in load_settings(notify_secret=NOTIFY_SECRET).secrets()  # redacted in logs
