"""Enqueueing during a Redis outage fails as Dramatiq's connection error, not a raw Redis one.

Dramatiq's delay consumer enqueues each due message; a raw Redis error there ended the consumer
thread with the delayed messages it held (13 in-doubt retries stranded for good in a chaos run
after a Redis restart). As Dramatiq's `ConnectionClosed`, the consumer restarts instead.
"""

from __future__ import annotations

import dramatiq
import pytest
import redis
from dramatiq.errors import ConnectionClosed

from tests.servers import RedisServer
from worker.pipeline.broker import build_broker
from worker.settings import load_settings


def test_an_enqueue_while_redis_is_down_raises_dramatiqs_connection_error() -> None:
    server = RedisServer().start()
    try:
        client = redis.Redis.from_url(server.url, socket_connect_timeout=1)
        broker = build_broker(load_settings(redis_url=server.url), client)
        message = dramatiq.Message(queue_name="q", actor_name="a", args=(), kwargs={}, options={})
        server.stop()
        with pytest.raises(ConnectionClosed):
            broker.enqueue(message)
        client.close()
    finally:
        server.cleanup()
