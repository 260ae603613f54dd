"""The Dramatiq Redis broker, its middleware and the one actor that processes events.

Timings are chosen, not inherited (README "Heartbeats and shutdown"): a killed worker's messages
come back after `heartbeat_timeout_ms`; a live worker whose heartbeat stalls during a long call
may see its message delivered again, which the per-client lease turns into a harmless wait.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import CurrentMessage, Retries

from worker import keys, tracing
from worker.errors import BrokerUnavailable
from worker.log import get_logger
from worker.pipeline.attempts import AttemptStore
from worker.pipeline.executor import AttemptInfo, Executor, Requeue
from worker.pipeline.publish import ACTOR_NAME, PUBLISHED_AT, REPLAY_OPTION
from worker.pipeline.results import FinishObserver, finish_nothing
from worker.settings import Settings

log = get_logger(__name__)
T = TypeVar("T")

ATTEMPT = "saw_attempt"
FIRST_FAILURE = "saw_first_failure_ms"
LEASE = "saw_lease"  # the lease kept for a retry (an id, not a secret)
# While Redis is down nothing can be recorded, so the thread waits for it rather than letting
# Dramatiq retry (its retry enqueue would fail too and the message would be acked and lost).
OUTAGE_BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class Broker(RedisBroker):
    """Dramatiq's Redis broker, which also gives back what a delay consumer strands.

    On a Redis connection error Dramatiq's consumer thread drops its in-memory delay queue and
    starts a new consumer, while the dropped messages stay in this live process's ack set: no
    maintenance pass ever returns them (that needs a dead heartbeat), so a delayed retry would
    wait until the process restarts. A new delay consumer holds nothing yet, so everything in its
    ack set is stranded: requeue it before consuming. (Seen in `make chaos` after a Redis
    restart; a fresh process's set is empty.)
    """

    def close(self) -> None:
        super().close()
        self.client.close()  # its own client, on the broker's database

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        if queue_name.endswith(".DQ"):
            self._requeue_stranded(queue_name)
        return super().consume(queue_name, prefetch, timeout)

    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        """Dramatiq's enqueue, a Redis connection error coming out as Dramatiq's own (as it does
        from consuming). Dramatiq's delay consumer enqueues each due message; a raw Redis error
        there is an "unexpected error" that can end the consumer thread, and the delayed
        messages it held stay in this live process's ack set for good (seen in `make chaos`:
        13 in-doubt retries stranded by a Redis restart). Translated, the consumer restarts and
        `_requeue_stranded` gives them back."""
        try:
            return super().enqueue(message, delay=delay)
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]

    def _requeue_stranded(self, queue_name: str) -> None:
        acks = f"{self.namespace}:__acks__.{self.broker_id}.{queue_name}"
        try:
            members: Any = self.client.smembers(acks)
            stranded = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
            if stranded:
                self.do_requeue(queue_name, *stranded)
                log.warning("broker.requeued_stranded", queue=queue_name, messages=len(stranded))
        except redis.RedisError as exc:  # the consumer's own first call will say it too
            log.warning("broker.requeue_stranded_failed", queue=queue_name, error=str(exc))


def build_broker(settings: Settings, client: redis.Redis) -> RedisBroker:
    """A Redis broker in our key namespace with the middleware the pipeline relies on; `client`
    is on the broker's own database (`Settings.broker_url`, worker/pipeline/keyspace.py)."""
    return Broker(  # type: ignore[no-untyped-call]
        client=client,
        namespace=keys.dramatiq_namespace(settings.key_prefix),
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        dead_message_ttl=settings.dead_message_ttl_ms,
        maintenance_chance=settings.maintenance_chance,
        # No TimeLimit: every call has its own timeouts, and a thread waiting out a Redis outage
        # must not be interrupted into Dramatiq's retry path (which would ack the message).
        # Retries only sees what escapes the actor (shutdown signals), never our failures.
        middleware=[
            Retries(max_retries=20, min_backoff=1000, max_backoff=300_000),
            CurrentMessage(),
        ],
    )


def attempt_info(options: dict[str, Any]) -> AttemptInfo:
    """Read our attempt bookkeeping from a message's options."""
    return AttemptInfo(
        attempt=int(options.get(ATTEMPT, 1)),
        published_ms=int(options.get(PUBLISHED_AT) or 0),
        first_failure_ms=options.get(FIRST_FAILURE),
        replay=int(options.get(REPLAY_OPTION) or 0),
    )


def declare_actor(
    broker: RedisBroker,
    executor: Executor,
    settings: Settings,
    sleep: Any = time.sleep,
    on_finish: FinishObserver = finish_nothing,
) -> Any:
    """Declare `process_event` on `broker`: run the executor, re-enqueue when it says so."""

    def process_event(event: dict[str, Any]) -> None:
        message = CurrentMessage.get_current_message()
        if message is None:
            raise RuntimeError("process_event runs only inside a Dramatiq worker")
        info = attempt_info(message.options)
        # A retry of a partly applied event comes back with the lease it kept.
        token = message.options.get(LEASE) or AttemptStore.new_token()
        with _consumer_span(event, info, message.options):
            result = _while_redis_is_down(lambda: executor.handle(event, info, token), sleep)
            if isinstance(result, Requeue):
                _while_redis_is_down(lambda: requeue(broker, message, info, result), sleep)
            else:
                on_finish(event, info, result.outcome)

    declare = dramatiq.actor(broker=broker, actor_name=ACTOR_NAME, queue_name=settings.queue_name)
    return declare(process_event)


def _consumer_span(
    event: dict[str, Any], info: AttemptInfo, options: dict[str, Any]
) -> AbstractContextManager[Any]:
    """The attempt's span, under the enqueue's (carried in the message), after a span of the
    time the message waited in the queue beside it; a no-op when tracing is off."""
    if not tracing.enabled():
        return tracing.span("process_event")
    attributes: dict[str, str | int] = {
        "messaging.system": "redis",
        "messaging.operation.type": "process",
        "saw.event_id": str(event.get("id", "")),
        "saw.event_type": str(event.get("type", "")),
        "saw.client_id": str(event.get("subject", "")),
        "saw.attempt": info.attempt,
        "saw.replay": info.replay,
    }
    carrier = options.get(tracing.TRACE_OPTION)
    if info.published_ms:
        now_ms = int(time.time() * 1000)
        tracing.record(
            "queue wait", info.published_ms, now_ms, {"saw.attempt": info.attempt}, carrier
        )
    return tracing.span("process_event", attributes, kind="consumer", parent=carrier)


def _while_redis_is_down(fn: Callable[[], T], sleep: Callable[[float], None]) -> T:
    """Run `fn` until it gets past a Redis outage: nothing can be recorded meanwhile, so the
    message must stay unacknowledged (a Dramatiq retry would fail to enqueue and be acked)."""
    for pause in itertools.chain(OUTAGE_BACKOFF_S, itertools.repeat(OUTAGE_BACKOFF_S[-1])):
        try:
            return fn()
        except BrokerUnavailable as exc:
            log.warning("redis.unavailable", error=str(exc), retry_in_s=pause)
            sleep(pause)
    raise AssertionError("unreachable: the backoff never ends")


def requeue(broker: RedisBroker, message: Any, info: AttemptInfo, result: Requeue) -> None:
    """Enqueue the message again after `result.delay_ms`; failures count against the limits."""
    options: dict[str, Any] = {LEASE: result.lease_token}
    if result.counts:
        options[ATTEMPT] = info.attempt + 1
        options[FIRST_FAILURE] = info.first_failure_ms or int(time.time() * 1000)
    try:
        broker.enqueue(message.copy(options=options), delay=result.delay_ms)
    except (redis.RedisError, ConnectionClosed) as exc:
        raise BrokerUnavailable(f"could not re-enqueue: {exc}") from exc
