"""The end every route shares: enqueue a request's events atomically, then answer 202.

Enqueueing is blocking Redis I/O, so it runs in a worker thread, and it is a group commit: the
messages of every request that arrives while one MULTI/EXEC is in flight go together in the next
one. Each request still gets all-or-nothing (a MULTI/EXEC is atomic, and a request is answered
202 only once its own messages are in one that succeeded), but under load one thread hop and
one Redis round trip serve many requests instead of one each.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from handlers.events import Event
from worker import tracing
from worker.errors import BrokerUnavailable
from worker.ingress.metrics import IngressMetrics
from worker.ingress.problems import JsonResponse, Unavailable
from worker.log import get_logger
from worker.pipeline.publish import Publisher, build_message

log = get_logger(__name__)

MAX_REQUESTS_PER_COMMIT = 128


@dataclass(frozen=True)
class _Waiting:
    """The messages of one request and the future that tells it how their commit went."""

    messages: list[Any]
    done: asyncio.Future[None]


class GroupCommit:
    """Enqueues the messages of concurrent requests together, one MULTI/EXEC at a time."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self._waiting: list[_Waiting] = []
        self._drainer: asyncio.Task[None] | None = None

    async def enqueue(self, messages: list[Any]) -> None:
        """Return once `messages` are on the queue; raise BrokerUnavailable if none could be."""
        waiting = _Waiting(messages, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        await waiting.done

    async def _drain(self) -> None:
        """Commit what is waiting, batch after batch, until nothing is."""
        try:
            while self._waiting:
                batch = self._waiting[:MAX_REQUESTS_PER_COMMIT]
                del self._waiting[:MAX_REQUESTS_PER_COMMIT]
                await self._commit(batch)
        finally:
            self._drainer = None

    async def _commit(self, batch: list[_Waiting]) -> None:
        """One MULTI/EXEC for the whole batch; every request in it learns the outcome."""
        messages = [message for waiting in batch for message in waiting.messages]
        try:
            await anyio.to_thread.run_sync(self._publisher.enqueue_messages, messages)
        except BaseException as exc:
            for waiting in batch:
                if not waiting.done.done():
                    waiting.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for waiting in batch:
                if not waiting.done.done():
                    waiting.done.set_result(None)


class Enqueuer:
    """Enqueues a request's events and turns the outcome into the route's answer."""

    def __init__(self, publisher: Publisher, queue_name: str, metrics: IngressMetrics) -> None:
        self._commits = GroupCommit(publisher)
        self._queue = queue_name
        self._metrics = metrics

    async def accept(self, route: str, events: list[Event]) -> JsonResponse:
        """Enqueue all `events` or none: 202 naming each, or 503 if Redis is down."""
        started = time.perf_counter()
        with tracing.span("enqueue", _enqueue_attributes(self._queue, events), kind="producer"):
            await self._enqueue(route, [build_message(event, self._queue) for event in events])
        self._metrics.observe_enqueue(route, started)
        accepted = [
            {"key": e.key, "id": e.id, "source": e.source, "type": str(e.type)} for e in events
        ]
        log.info(
            "ingress.accepted",
            route=route,
            keys=[e.key for e in events],
            event_types=[str(e.type) for e in events],
            client_ids=[e.client_id for e in events],
        )
        return JsonResponse({"accepted": accepted}, status_code=202)

    async def _enqueue(self, route: str, messages: list[Any]) -> None:
        if not messages:
            return
        try:
            await self._commits.enqueue(messages)
        except BrokerUnavailable as exc:
            log.warning("ingress.redis_unavailable", route=route, error=str(exc))
            raise Unavailable(["redis: unreachable, nothing was enqueued; retry later"]) from None


def _enqueue_attributes(queue: str, events: list[Event]) -> dict[str, str | int]:
    """The enqueue span's attributes (messaging semantic conventions); one event's ids too."""
    attributes: dict[str, str | int] = {
        "messaging.system": "redis",
        "messaging.destination.name": queue,
        "messaging.batch.message_count": len(events),
    }
    if len(events) == 1:
        attributes["saw.event_id"] = events[0].id
        attributes["saw.event_type"] = str(events[0].type)
        attributes["saw.client_id"] = events[0].client_id
    return attributes
