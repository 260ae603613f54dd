"""Failures of the broker itself: Redis down mid-flight; dead letters outliving Dramatiq's XQ."""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest
import redis

from handlers import examples as f
from tests.conftest import TEST_API_KEY
from tests.pipeline_support import outcomes, pipeline_settings, running_pipeline, wait_for_outcomes
from tests.servers import RedisServer, ThreadedUvicorn, wait_until
from worker import keys
from worker.runtime import build_runtime
from worker.sandbox import SandboxAdmin


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    """A test-owned Redis that survives its own restart (AOF, fsync on every write)."""
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always").start()
    yield server
    server.cleanup()


def test_redis_down_between_failure_and_requeue_loses_nothing(
    durable_redis: RedisServer, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> None:
    """The 503 comes back while Redis is down; after restart the event reaches one outcome."""
    client = redis.Redis.from_url(durable_redis.url)
    settings = pipeline_settings(durable_redis.url, f"{sandbox_server.url}/v6", TEST_API_KEY)
    with running_pipeline(settings) as runtime:
        onboard = f.onboarded("rita")
        runtime.publisher.publish(onboard)
        wait_for_outcomes(client, [onboard["id"]])
        sandbox.set_faults(
            {"operations": {"disable": {"error_next": 1, "error_status": 503, "latency_ms": 600}}}
        )
        suspend = f.suspended("rita", t=5)
        runtime.publisher.publish(suspend)
        # The lease is taken just before the (slow) call: then the call is in flight.
        wait_until(lambda: client.exists("saw:lock:rita") == 1, what="the call in flight")
        assert sandbox.journal(operation="disable") == []
        durable_redis.stop()
        try:
            wait_until(lambda: len(sandbox.journal(operation="disable")) == 1, what="the 503")
        finally:
            durable_redis.start()
        found = wait_for_outcomes(client, [suspend["id"]], timeout_s=30)
        assert found[suspend["id"]]["outcome"] == "applied"
    mine = [o for o in outcomes(client) if o["event_id"] == suspend["id"]]
    assert len(mine) == 1  # exactly one outcome recorded
    assert [e["status"] for e in sandbox.journal(operation="disable")] == [503, 200]
    client.close()


def test_dead_letters_outlive_dramatiq_dead_message_ttl(
    redis_url: str,
    broker_client: redis.Redis,
    redis_client: redis.Redis,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
) -> None:
    """Dramatiq drops its own XQ entries after dead_message_ttl; our dead letters stay."""
    settings = pipeline_settings(
        redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY,
        dead_message_ttl_ms=1000, maintenance_chance=1_000_000,
    )  # fmt: skip
    runtime = build_runtime(settings)

    @dramatiq.actor(broker=runtime.broker, queue_name="control", max_retries=0)
    def always_fails() -> None:
        raise RuntimeError("control message for Dramatiq's own dead-letter queue")

    worker = dramatiq.Worker(runtime.broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        sandbox.set_state({"master_balance": 0})
        onboard = f.onboarded("otto", credits=10)  # the grant fails: a dead letter of ours
        runtime.publisher.publish(onboard)
        wait_for_outcomes(redis_client, [onboard["id"]])
        always_fails.send()
        xq = keys.dramatiq_queue("saw", "control") + ".XQ"
        wait_until(lambda: broker_client.zcard(xq) == 1, what="Dramatiq's XQ entry")
        wait_until(lambda: broker_client.zcard(xq) == 0, what="Dramatiq's XQ expiry")
        (letter,) = runtime.dead_letters.list()
        assert letter.reason == "permanent_error"
        assert letter.event["id"] == onboard["id"]
    finally:
        worker.stop()
        runtime.close()
