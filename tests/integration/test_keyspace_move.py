"""An upgrade from the shared keyspace strands nothing: messages a former version queued in the
records' database (ready and delayed) are moved to the broker's own, in order, and processed."""

from __future__ import annotations

import redis

from handlers import examples as f
from tests.conftest import TEST_API_KEY
from tests.pipeline_support import pipeline_settings, running_pipeline, wait_for_outcomes
from tests.servers import ThreadedUvicorn
from worker import keys
from worker.pipeline.keyspace_move import move_to_broker_db
from worker.pipeline.publish import Publisher
from worker.sandbox import SandboxAdmin

QUEUE = keys.dramatiq_queue("saw", "subaccount-events")


def test_messages_left_in_the_shared_keyspace_move_and_are_processed(
    redis_url: str,
    redis_client: redis.Redis,
    broker_client: redis.Redis,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
) -> None:
    settings = pipeline_settings(redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY)
    shared = settings.model_copy(update={"broker_redis_db": settings.redis_db})
    events = [f.onboarded(f"mv-{n}") for n in range(3)]
    Publisher(redis_client, shared).publish_many(events)  # as before the upgrade
    redis_client.rpush(f"{QUEUE}.DQ", "gone-id")  # an id without its message is dropped
    waiting = redis_client.lrange(QUEUE, 0, -1)
    assert len(waiting) == 3
    assert broker_client.llen(QUEUE) == 0

    assert move_to_broker_db(redis_client, settings) == 4
    assert redis_client.exists(QUEUE, f"{QUEUE}.msgs", f"{QUEUE}.DQ") == 0
    assert broker_client.lrange(QUEUE, 0, -1) == waiting  # in order
    assert broker_client.hlen(f"{QUEUE}.msgs") == 3
    assert move_to_broker_db(redis_client, settings) == 0  # nothing left: nothing moves

    with running_pipeline(settings):
        found = wait_for_outcomes(redis_client, [e["id"] for e in events], timeout_s=30)
    assert {r["outcome"] for r in found.values()} == {"applied"}
