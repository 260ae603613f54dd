"""A delay consumer made anew (after a Redis connection error) gives back what the old one held."""

from __future__ import annotations

import dramatiq
import redis

from tests.conftest import TEST_API_KEY
from tests.pipeline_support import pipeline_settings
from worker.pipeline.broker import build_broker


def test_a_new_delay_consumer_requeues_the_messages_its_process_stranded(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Dramatiq drops its in-memory delay queue on a connection error; the ids stay in this live
    process's ack set. The next delay consumer puts them back on the delay queue."""
    settings = pipeline_settings(redis_url, "http://127.0.0.1:9/v6", TEST_API_KEY)
    broker = build_broker(settings, redis.Redis.from_url(redis_url))
    broker.declare_queue("events")
    message = dramatiq.Message(
        queue_name="events.DQ", actor_name="a", args=(), kwargs={}, options={"eta": 0}
    )
    broker.enqueue(message, delay=1)  # on the delay queue
    first = broker.consume("events.DQ", prefetch=1, timeout=100)
    fetched = next(m for m in first if m is not None)  # now in this process's ack set
    acks = f"{broker.namespace}:__acks__.{broker.broker_id}.events.DQ"
    assert redis_client.scard(acks) == 1
    # The consumer thread would now drop `first` and its delay queue (a connection error).
    second = broker.consume("events.DQ", prefetch=1, timeout=100)
    assert redis_client.scard(acks) == 0
    again = next(m for m in second if m is not None)
    assert again.message_id == fetched.message_id
    broker.close()
