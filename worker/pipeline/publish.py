"""Publishing: validate events, then enqueue them for the worker in one atomic Redis round trip.

A batch is all-or-nothing: every event is validated before anything is written, and the writes
go in one MULTI/EXEC, so Redis holds either the whole batch or none of it. The messages use
Dramatiq's own Redis layout (a `.msgs` hash plus the queue list), so `dramatiq` workers consume
them as if `actor.send()` had been called; `tests/integration/test_publish.py` guards that layout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis

from handlers.events import EVENT_CLASSES, Event, parse_event
from worker import keys
from worker.errors import BrokerUnavailable, InvalidEvent
from worker.settings import Settings

ACTOR_NAME = "process_event"
PUBLISHED_AT = "saw_published_ms"  # message option: when the event first entered the queue


@dataclass(frozen=True)
class Published:
    """An enqueued event: its dedupe `key` (from source + id) and the Dramatiq message id."""

    key: str
    event_id: str
    message_id: str


def build_message(event: Event, queue_name: str, published_ms: int | None = None) -> Any:
    """The Dramatiq message carrying `event` to the `process_event` actor."""
    return dramatiq.Message(
        queue_name=queue_name,
        actor_name=ACTOR_NAME,
        args=(event.to_message(),),
        kwargs={},
        options={
            "redis_message_id": str(uuid.uuid4()),
            PUBLISHED_AT: published_ms if published_ms is not None else _now_ms(),
        },
    )


class Publisher:
    """Validates and enqueues events on the worker's queue."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._redis = client
        self._queue = settings.queue_name
        self._list_key = keys.dramatiq_queue(settings.key_prefix, settings.queue_name)

    def publish(self, event: Event | Mapping[str, Any]) -> Published:
        """Validate and enqueue one event; raise InvalidEvent or BrokerUnavailable."""
        return self.publish_many([event])[0]

    def publish_many(self, events: Sequence[Event | Mapping[str, Any]]) -> list[Published]:
        """Validate every event, then enqueue all of them atomically (or none)."""
        parsed = validate_all(events)
        messages = [build_message(event, self._queue) for event in parsed]
        self.enqueue_messages(messages)
        return [
            Published(key=e.key, event_id=e.id, message_id=m.message_id)
            for e, m in zip(parsed, messages, strict=True)
        ]

    def enqueue_messages(self, messages: Sequence[Any]) -> None:
        """Write ready-made Dramatiq messages to the queue in one MULTI/EXEC."""
        pipe = self._redis.pipeline(transaction=True)
        self.add_to(pipe, messages)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"could not enqueue on Redis ({type(exc).__name__})") from exc

    def add_to(self, pipe: Any, messages: Sequence[Any]) -> None:
        """Queue the writes of `messages` on `pipe`, for callers that add writes of their own."""
        for message in messages:
            redis_id = message.options["redis_message_id"]
            pipe.hset(f"{self._list_key}.msgs", redis_id, message.encode())
            pipe.rpush(self._list_key, redis_id)

    @property
    def queue_name(self) -> str:
        return self._queue


def validate_all(events: Sequence[Event | Mapping[str, Any]]) -> list[Event]:
    """Parse every event; one InvalidEvent names each bad one by index (`[2] data.email: …`)."""
    parsed: list[Event] = []
    reasons: list[str] = []
    for index, raw in enumerate(events):
        if isinstance(raw, EVENT_CLASSES):
            parsed.append(raw)
            continue
        try:
            parsed.append(parse_event(dict(raw) if isinstance(raw, Mapping) else raw))
        except InvalidEvent as exc:
            prefix = f"[{index}] " if len(events) > 1 else ""
            reasons.extend(prefix + reason for reason in exc.reasons)
    if reasons:
        raise InvalidEvent(reasons)
    return parsed


def _now_ms() -> int:
    return int(time.time() * 1000)
