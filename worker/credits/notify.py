"""Credit notifications: recorded in a capped Redis stream, and POSTed to a signed webhook.

Each notification is a Standard Webhooks message (`webhook-id`, `webhook-timestamp`,
`webhook-signature` = `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`): the body is
`{"type", "timestamp", "data"}`. Delivery goes through the queue: the monitor writes a message
for the `deliver_credit_notification` actor on its own queue (in the same transaction as the alert
change); `delivery_worker` (run by every monitor) consumes it, and Dramatiq retries failures with
exponential backoff. The message carries the notification only; URL and secret come from the
delivering process's settings, so no secret ever sits in Redis.
The `webhook-id` is stable across retries, so a receiver can drop a repeat delivery.
The URL is checked against `worker.url_policy` at start and before every delivery (after DNS),
and the request goes to the address that passed the check.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import uuid
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import dramatiq
import httpx
import redis
from standardwebhooks.webhooks import Webhook

from worker import keys
from worker.errors import BrokerUnavailable, ConfigError, SubaccountWorkerError
from worker.log import get_logger
from worker.pipeline.publish import Publisher
from worker.settings import Settings
from worker.url_policy import Resolver, Unresolved, UrlRefused, pinned

log = get_logger(__name__)
ACTOR_NAME = "deliver_credit_notification"
NOTIFY_URL = "SUBACCOUNT_WORKER_NOTIFY_URL"


class NotificationType(StrEnum):
    CREDITS_LOW = "subaccount.credits_low"
    CREDITS_RECOVERED = "subaccount.credits_recovered"
    DRIFT_DETECTED = "subaccount.drift_detected"
    CREDITS_DIGEST = "subaccount.credits_digest"  # every low client, once per digest period


@dataclass(frozen=True)
class Notification:
    """One notification: its stable id, type, time (epoch s) and data."""

    id: str
    type: NotificationType
    at: float
    data: dict[str, Any]

    @classmethod
    def make(
        cls, kind: NotificationType, at: float, data: dict[str, Any], *parts: str
    ) -> Notification:
        """A notification whose id derives from its type and `parts` (same parts, same id)."""
        digest = hashlib.sha256("\n".join([kind.value, *parts]).encode()).hexdigest()[:24]
        return cls(id=f"msg_{digest}", type=kind, at=at, data=data)

    def body(self) -> str:
        """The JSON body sent to the webhook (Standard Webhooks' recommended envelope)."""
        stamp = dt.datetime.fromtimestamp(self.at, dt.UTC).isoformat().replace("+00:00", "Z")
        return json.dumps({"type": self.type.value, "timestamp": stamp, "data": self.data})

    def to_message(self) -> dict[str, Any]:
        return {**asdict(self), "type": self.type.value}

    @classmethod
    def from_message(cls, raw: dict[str, Any]) -> Notification:
        return cls(raw["id"], NotificationType(raw["type"]), float(raw["at"]), raw["data"])


class DeliveryFailed(SubaccountWorkerError):
    """The webhook did not accept a notification; the queue retries it with backoff."""


def signed_headers(secret: str, notification: Notification, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of `body` (signed with `secret`, `whsec_...` base64)."""
    sent_at = dt.datetime.now(dt.UTC)
    signature = Webhook(secret).sign(notification.id, sent_at, body)
    return {
        "webhook-id": notification.id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def check_notify_settings(settings: Settings, resolver: Resolver = socket.getaddrinfo) -> None:
    """At start: with a webhook URL, a usable secret is required (else ConfigError naming the
    variable), and its host must not resolve inward (one that does not resolve yet is logged)."""
    if not settings.notify_url:
        return
    _check_secret(settings)
    try:
        settings.notify_policy().resolve(settings.notify_url, NOTIFY_URL, resolver)
    except Unresolved as exc:
        url = settings.notify_url_for_display()
        log.warning("credits.notify_url_unresolved", url=url, why=str(exc))


def _check_secret(settings: Settings) -> None:
    secret = settings.notify_secret.get_secret_value()
    if not secret:
        raise ConfigError("SUBACCOUNT_WORKER_NOTIFY_SECRET is required with NOTIFY_URL")
    try:
        Webhook(secret)
    except Exception:
        raise ConfigError(
            "SUBACCOUNT_WORKER_NOTIFY_SECRET must be whsec_ followed by base64 (Standard Webhooks)"
        ) from None


def deliver(
    settings: Settings,
    notification: Notification,
    http: httpx.Client,
    resolver: Resolver = socket.getaddrinfo,
) -> None:
    """POST one notification to the configured webhook, at an address resolved and checked
    just now; raise DeliveryFailed if refused (retried: DNS may be fixed) or not accepted."""
    if not settings.notify_url:
        raise ConfigError("SUBACCOUNT_WORKER_NOTIFY_URL is not set in the delivering worker")
    _check_secret(settings)
    try:
        address = settings.notify_policy().resolve(settings.notify_url, NOTIFY_URL, resolver)
    except UrlRefused as exc:
        url = settings.notify_url_for_display()
        log.warning("credits.notification_url_refused", url=url, why=str(exc))
        raise DeliveryFailed(f"webhook address refused ({exc}); will retry") from None
    secret = settings.notify_secret.get_secret_value()
    body = notification.body()
    target, host, extensions = pinned(settings.notify_url, address)
    headers = {**signed_headers(secret, notification, body), **host}
    try:
        response = http.post(target, content=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"webhook not reached ({type(exc).__name__}); will retry") from None
    if not response.is_success:
        raise DeliveryFailed(f"webhook answered {response.status_code}; will retry")
    log.info(
        "credits.notification_delivered",
        notification_id=notification.id,
        notification_type=notification.type.value,
    )


def declare_notify_actor(broker: Any, settings: Settings) -> Any:
    """Declare the delivery actor on `broker`, on its own queue with its own retry policy."""
    http = httpx.Client(timeout=settings.notify_timeout_s)

    def deliver_credit_notification(message: dict[str, Any]) -> None:
        deliver(settings, Notification.from_message(message), http)

    declare = dramatiq.actor(
        broker=broker,
        actor_name=ACTOR_NAME,
        queue_name=settings.notify_queue_name,
        max_retries=settings.notify_max_retries,
        min_backoff=settings.notify_min_backoff_ms,
        max_backoff=settings.notify_max_backoff_ms,
        throws=(ConfigError,),  # a missing URL/secret is not retried: it will not fix itself
    )
    return declare(deliver_credit_notification)


def delivery_worker(settings: Settings, client: redis.Redis, threads: int = 2) -> Any:
    """A started Dramatiq worker delivering notifications (only their queue), or None without a
    webhook URL. The monitor runs it, so event workers are untouched: every monitor (the standby
    too) delivers; while none runs, no notification is produced either, and the queue keeps
    what is waiting."""
    if not settings.notify_url:
        return None
    from worker.pipeline.broker import build_broker
    from worker.runtime import redis_client

    broker = build_broker(settings, redis_client(settings, settings.broker_url()))
    declare_notify_actor(broker, settings)
    worker = dramatiq.Worker(broker, queues={settings.notify_queue_name}, worker_threads=threads)
    worker.start()
    return worker


class Notifier:
    """Records notifications in the stream and, with a webhook URL, queues their delivery.

    `add` puts both writes on the caller's transaction (beside the alert state that caused the
    notification), so a notification is recorded and queued exactly when its cause is recorded.
    The delivery message uses Dramatiq's own layout (as `Publisher` writes events), for the
    `deliver_credit_notification` actor on `notify_queue_name`.
    """

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._redis = client
        self._key = keys.credit_notifications(settings.key_prefix)
        self._maxlen = settings.notify_stream_maxlen
        self._queue = (
            Publisher(
                client, settings.model_copy(update={"queue_name": settings.notify_queue_name})
            )
            if settings.notify_url
            else None
        )

    def add(self, pipe: Any, notification: Notification) -> None:
        """Record `notification` (and queue its delivery) on `pipe`, a MULTI the caller runs."""
        fields = {
            "id": notification.id,
            "type": notification.type.value,
            "at": repr(notification.at),
            "data": json.dumps(notification.data),
        }
        pipe.xadd(self._key, fields, maxlen=self._maxlen, approximate=True)
        if self._queue is not None:
            self._queue.add_to(pipe, [delivery_message(notification, self._queue.queue_name)])

    def emit(self, notification: Notification) -> None:
        """Record (and queue) one notification in its own transaction."""
        pipe = self._redis.pipeline(transaction=True)
        self.add(pipe, notification)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"could not record a notification ({exc})") from exc
        logged([notification])


def delivery_message(notification: Notification, queue_name: str) -> Any:
    """The Dramatiq message asking the workers to deliver `notification` (no secret in it)."""
    return dramatiq.Message(
        queue_name=queue_name,
        actor_name=ACTOR_NAME,
        args=(notification.to_message(),),
        kwargs={},
        options={"redis_message_id": str(uuid.uuid4())},
    )


def logged(notifications: list[Notification]) -> None:
    """Log notifications once their transaction went through."""
    for note in notifications:
        log.info("credits.notification", notification_id=note.id, notification_type=note.type.value)


def read_notifications(client: redis.Redis, prefix: str, count: int = 100) -> list[Notification]:
    """The most recent notifications, oldest first."""
    rows: Any = client.xrevrange(keys.credit_notifications(prefix), count=count)
    found = []
    for _entry_id, raw in reversed(rows):
        f = {
            k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
            for k, v in raw.items()
        }
        found.append(
            Notification(
                f["id"], NotificationType(f["type"]), float(f["at"]), json.loads(f["data"])
            )
        )
    return found
