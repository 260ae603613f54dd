"""The end every route shares: enqueue the events atomically, then answer 202 with their keys.

Publishing is blocking Redis I/O, so it runs in a worker thread; the event loop keeps reading
other requests meanwhile.
"""

from __future__ import annotations

import time

import anyio.to_thread

from handlers.events import Event
from worker.errors import BrokerUnavailable, InvalidEvent
from worker.ingress.metrics import IngressMetrics
from worker.ingress.problems import JsonResponse, Malformed, Unavailable
from worker.log import get_logger
from worker.publish import Publisher

log = get_logger(__name__)


class Enqueuer:
    """Publishes a request's events and turns the outcome into the route's answer."""

    def __init__(self, publisher: Publisher, metrics: IngressMetrics) -> None:
        self._publisher = publisher
        self._metrics = metrics

    async def accept(self, route: str, events: list[Event]) -> JsonResponse:
        """Enqueue all `events` or none: 202 naming each, 400 if invalid, 503 if Redis is down."""
        started = time.perf_counter()
        try:
            published = await anyio.to_thread.run_sync(self._publisher.publish_many, events)
        except InvalidEvent as exc:
            raise Malformed(exc.reasons) from None
        except BrokerUnavailable as exc:
            log.warning("ingress.redis_unavailable", route=route, error=str(exc))
            raise Unavailable(["redis: unreachable, nothing was enqueued; retry later"]) from None
        self._metrics.observe_enqueue(route, started)
        accepted = [
            {"key": p.key, "id": p.event_id, "source": e.source, "type": str(e.type)}
            for e, p in zip(events, published, strict=True)
        ]
        log.info(
            "ingress.accepted",
            route=route,
            keys=[p.key for p in published],
            event_types=[str(e.type) for e in events],
            client_ids=[e.client_id for e in events],
        )
        return JsonResponse({"accepted": accepted}, status_code=202)
