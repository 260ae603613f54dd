"""Publishing: validate events, then enqueue them for the worker in atomic Redis round trips.

A batch (`publish_many`) is all-or-nothing: every event is validated before anything is written,
and the writes go in one MULTI/EXEC, so Redis holds either the whole batch or none of it. A
stream of any length (`Spool`, what `send` uses) is validated whole into a temporary file first,
then enqueued in chunks of one MULTI/EXEC each: nothing is enqueued if any event is invalid, and
memory stays bounded. The messages use Dramatiq's own Redis layout (a `.msgs` hash plus the queue
list), so `dramatiq` workers consume them as if `actor.send()` had been called: the ingress tests
read the queue through that layout (`tests/ingress_support.py`), and a real `dramatiq.Worker`
consumes what is published here in `tests/integration/test_pipeline.py`.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis

from handlers.errors import InvalidEvent
from handlers.events import EVENT_CLASSES, Event, parse_event
from handlers.limits import DEFAULT_LIMITS, EventLimits
from worker import keys, tracing
from worker.durability import Durability, send_all
from worker.errors import BrokerUnavailable
from worker.pipeline.keyspace import Keyspace
from worker.settings import Settings

ACTOR_NAME = "process_event"
PUBLISHED_AT = "saw_published_ms"  # message option: when the event first entered the queue
REPLAY_OPTION = "replay"  # message option: how many times an operator replayed it (ops sets it)


@dataclass(frozen=True)
class Published:
    """An enqueued event: its dedupe `key` (from source + id) and the Dramatiq message id."""

    key: str
    event_id: str
    message_id: str


def build_message(event: Event, queue_name: str, published_ms: int | None = None) -> Any:
    """The Dramatiq message carrying `event` to the `process_event` actor."""
    return message_for(event.to_message(), queue_name, published_ms)


def message_for(payload: dict[str, Any], queue_name: str, published_ms: int | None = None) -> Any:
    """The Dramatiq message carrying a validated event's `to_message()` payload."""
    options: dict[str, Any] = {
        "redis_message_id": str(uuid.uuid4()),
        PUBLISHED_AT: published_ms if published_ms is not None else _now_ms(),
    }
    if tracing.enabled():
        options[tracing.TRACE_OPTION] = tracing.inject()
    return dramatiq.Message(
        queue_name=queue_name, actor_name=ACTOR_NAME, args=(payload,), kwargs={}, options=options
    )


class Publisher:
    """Validates and enqueues events on the worker's queue."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._redis = client
        self._durability = Durability.from_settings(client, settings)
        self._queue = settings.queue_name
        self._list_key = keys.dramatiq_queue(settings.key_prefix, settings.queue_name)
        self._limits = event_limits(settings)
        self.keyspace = Keyspace.of(settings)  # the queue is in the broker's database

    def publish(self, event: Event | Mapping[str, Any]) -> Published:
        """Validate and enqueue one event; raise InvalidEvent or BrokerUnavailable."""
        return self.publish_many([event])[0]

    def publish_many(self, events: Sequence[Event | Mapping[str, Any]]) -> list[Published]:
        """Validate every event, then enqueue all of them atomically (or none)."""
        parsed = validate_all(events, self._limits)
        messages = [build_message(event, self._queue) for event in parsed]
        self.enqueue_messages(messages)
        return [
            Published(key=e.key, event_id=e.id, message_id=m.message_id)
            for e, m in zip(parsed, messages, strict=True)
        ]

    def enqueue_messages(self, messages: Sequence[Any]) -> None:
        """Write ready-made Dramatiq messages to the queue in one MULTI/EXEC; return once they are
        kept as `SUBACCOUNT_WORKER_REDIS_DURABILITY` says (a wait on the same connection, so every
        caller of a group commit shares it). The wait goes after EXEC's answer, not with it: one
        that arrives with the writes blocks until the server's next cron tick (~100 ms)."""
        writes: list[tuple[Any, ...]] = []
        for message in messages:
            redis_id = message.options["redis_message_id"]
            writes.append(("HSET", f"{self._list_key}.msgs", redis_id, message.encode()))
            writes.append(("RPUSH", self._list_key, redis_id))
        pool = self._redis.connection_pool
        try:
            conn = pool.get_connection()
            try:
                # the queue lives in the broker's database: SELECTed there and back inside it
                done = send_all(conn, [("MULTI",), *self.keyspace.wrap(writes), ("EXEC",)])[-1]
                if done is None or any(isinstance(reply, Exception) for reply in done):
                    raise BrokerUnavailable("could not enqueue on Redis (the transaction failed)")
                self._durability.wait(conn)
            finally:
                pool.release(conn)
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"could not enqueue on Redis ({type(exc).__name__})") from exc

    def add_to(self, pipe: Any, messages: Sequence[Any]) -> None:
        """Queue the writes of `messages` on `pipe`, for callers that add writes of their own
        (in the broker's database: SELECTed there and back around them)."""
        self.keyspace.enter(pipe)
        for message in messages:
            redis_id = message.options["redis_message_id"]
            pipe.hset(f"{self._list_key}.msgs", redis_id, message.encode())
            pipe.rpush(self._list_key, redis_id)
        self.keyspace.leave(pipe)

    @property
    def queue_name(self) -> str:
        return self._queue


def event_limits(settings: Settings) -> EventLimits:
    """The catalogue's limits from settings: what every door and the worker on consume apply."""
    return EventLimits(max_credits_per_grant=settings.max_credits_per_grant)


def validate_all(
    events: Sequence[Event | Mapping[str, Any]], limits: EventLimits = DEFAULT_LIMITS
) -> list[Event]:
    """Parse every event; one InvalidEvent names each bad one by index (`[2] data.email: …`)."""
    parsed: list[Event] = []
    reasons: list[str] = []
    for index, raw in enumerate(events):
        if isinstance(raw, EVENT_CLASSES):
            parsed.append(raw)
            continue
        try:
            parsed.append(parse_event(dict(raw) if isinstance(raw, Mapping) else raw, limits))
        except InvalidEvent as exc:
            prefix = f"[{index}] " if len(events) > 1 else ""
            reasons.extend(prefix + reason for reason in exc.reasons)
    if reasons:
        raise InvalidEvent(reasons)
    return parsed


def _now_ms() -> int:
    return int(time.time() * 1000)


CHUNK_MAX_BYTES = 1 << 20  # a spool's chunk never holds more than this much event JSON

# Why an event that parsed is still refused at this door (e.g. a reserved source), or None.
SourceRule = Callable[[str], str | None]


class Spool:
    """Events validated one at a time into a temporary file, then enqueued in atomic chunks.

    Use it in a `with` block (the file is deleted at its end). `add` every event (or `refuse`
    what could not be read); if `invalid` is 0 at the end, `enqueue` writes them in chunks of
    `chunk_size`, one MULTI/EXEC each. Memory holds one chunk and at most `max_reasons` reasons
    (the rest are counted in `hidden`), whatever the input size.
    """

    def __init__(
        self, limits: EventLimits, source_rule: SourceRule | None = None, max_reasons: int = 50
    ) -> None:
        self._limits = limits
        self._source_rule = source_rule
        self._max_reasons = max_reasons
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (the spool owns it; see close)
        self.valid = 0
        self.invalid = 0
        self.reasons: list[str] = []
        self.hidden = 0

    def add(self, raw: object, label: str) -> None:
        """Validate one event; spool it, or keep its reasons prefixed with `label`."""
        try:
            event = parse_event(raw, self._limits)
        except InvalidEvent as exc:
            self.refuse(label, exc.reasons)
            return
        why = self._source_rule(event.source) if self._source_rule else None
        if why is not None:
            self.refuse(label, [why])
            return
        line = json.dumps([event.key, event.id, event.to_message()], separators=(",", ":"))
        self._file.write(line.encode() + b"\n")
        self.valid += 1

    def refuse(self, label: str, reasons: list[str]) -> None:
        """Count an invalid event and keep its first reasons (each cut to 300 characters)."""
        self.invalid += 1
        for reason in reasons:
            if len(self.reasons) < self._max_reasons:
                self.reasons.append(f"{label} {reason}"[:300])
            else:
                self.hidden += 1

    def enqueue(self, publisher: Publisher, chunk_size: int) -> Iterator[list[Published]]:
        """Enqueue the spooled events, a chunk per MULTI/EXEC; yield each chunk once written.

        A chunk is `chunk_size` events or CHUNK_MAX_BYTES of them, whichever comes first.
        """
        if self.invalid:
            raise InvalidEvent(self.reasons)  # a caller's bug: never enqueue a refused batch
        self._file.seek(0)
        chunk: list[list[Any]] = []
        size = 0
        for line in self._file:
            chunk.append(json.loads(line))
            size += len(line)
            if len(chunk) == chunk_size or size >= CHUNK_MAX_BYTES:
                yield self._write(publisher, chunk)
                chunk, size = [], 0
        if chunk:
            yield self._write(publisher, chunk)

    def _write(self, publisher: Publisher, chunk: list[list[Any]]) -> list[Published]:
        messages = [message_for(payload, publisher.queue_name) for _, _, payload in chunk]
        publisher.enqueue_messages(messages)
        return [
            Published(key=key, event_id=event_id, message_id=message.message_id)
            for (key, event_id, _), message in zip(chunk, messages, strict=True)
        ]

    def close(self) -> None:
        """Delete the temporary file."""
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
