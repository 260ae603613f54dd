"""Build the long-lived objects of one process from settings: Redis, broker, client, executor.

Nothing here runs at import time; `worker.actors` (the module Dramatiq's CLI loads) and the tests
call `build_runtime` with the settings they want.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from dramatiq.brokers.redis import RedisBroker

from handlers import Context
from worker.api.client import SubaccountClient
from worker.credits.notify import declare_notify_actor
from worker.credits.reconcile import drift_recorder
from worker.durability import Durability
from worker.ops import metrics
from worker.ops.dead_letters import DeadLetters
from worker.ops.outcome_counts import OutcomeCounter
from worker.pipeline.attempts import AttemptStore
from worker.pipeline.broker import build_broker, declare_actor
from worker.pipeline.circuit_gate import build_circuit
from worker.pipeline.executor import Executor, Limits
from worker.pipeline.fence import FenceRules
from worker.pipeline.in_doubt import Marks, Window
from worker.pipeline.publish import Publisher, event_limits
from worker.pipeline.retry import RetryPolicy
from worker.pipeline.steps import StepRunner
from worker.redis_access import connect
from worker.settings import ApiSurface, Settings


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    broker: RedisBroker
    api: SubaccountClient
    store: AttemptStore
    executor: Executor
    actor: Any
    publisher: Publisher
    dead_letters: DeadLetters
    notify_actor: Any = None  # delivers credit notifications, on its own queue
    outcome_counter: OutcomeCounter | None = None  # per-minute outcome counts (the overview)

    def close(self) -> None:
        if self.outcome_counter is not None:
            self.outcome_counter.stop()  # its last second of counts, written while Redis is open
        self.api.close()
        self.broker.close()  # and its own client, on the broker's database
        self.store.close()
        self.redis.close()


def redis_client(settings: Settings, url: str | None = None) -> redis.Redis:
    """One pooled Redis client per process, with timeouts so an outage fails fast (on `url`:
    another user's or database's URL, default REDIS_URL)."""
    pool_size = settings.worker_threads * 2 + 8
    return connect(
        settings,
        url=url,
        max_connections=pool_size,
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
        health_check_interval=30,
    )


@contextmanager
def build_publisher(settings: Settings) -> Iterator[Publisher]:
    """What a process that only enqueues needs (`send`): a publisher on its own Redis client,
    closed on the way out. No broker, API client or executor is built."""
    client = redis_client(settings)
    try:
        yield Publisher(client, settings)
    finally:
        client.close()


def build_store(settings: Settings, client: redis.Redis) -> AttemptStore:
    return AttemptStore(
        client,
        settings.key_prefix,
        lock_ttl_ms=settings.lease_ttl_ms,  # the lock TTL plus the in-doubt window
        ledger_ttl_s=settings.ledger_ttl_s,
        outcome_maxlen=settings.outcome_stream_maxlen,
        timeline_maxlen=settings.timeline_maxlen,
        durability=Durability.from_settings(client, settings),
    )


def outcome_observer(counter: OutcomeCounter) -> Any:
    """Each finished event counted twice: by Prometheus and per minute in Redis (the overview)."""

    def observe(outcome: Any, event_type: str) -> None:
        metrics.record_outcome(outcome, event_type)
        counter.observe(outcome, event_type)

    return observe


def call_observer(counter: OutcomeCounter) -> Any:
    """Each API call counted twice: by Prometheus and per minute in Redis (the overview)."""

    def observe(operation: str, result: str, seconds: float) -> None:
        metrics.observe_call(operation, result, seconds)
        counter.observe_call(operation, result, seconds)

    return observe


def build_executor(
    settings: Settings,
    store: AttemptStore,
    api: SubaccountClient,
    client: redis.Redis,
    counter: OutcomeCounter | None = None,
) -> Executor:
    policy = RetryPolicy(
        max_attempts=settings.retry_max_attempts,
        max_age_ms=int(settings.retry_max_age_s * 1000),
        min_backoff_ms=settings.retry_min_backoff_ms,
        max_backoff_ms=settings.retry_max_backoff_ms,
    )
    limits = Limits(
        unknown_client_wait_ms=int(settings.unknown_client_wait_s * 1000),
        unknown_client_retry_ms=settings.unknown_client_retry_ms,
        lock_busy_delay_ms=settings.lock_busy_delay_ms,
        max_deliveries=settings.max_deliveries,
        events=event_limits(settings),
    )
    ctx = Context(needs_password=api.surface == ApiSurface.V6)
    circuit = build_circuit(settings, client, observer=metrics.record_circuit)
    return Executor(
        store,
        StepRunner(api),
        ctx,
        policy,
        limits,
        rng=random.Random(),
        observer=outcome_observer(counter or OutcomeCounter(client, settings.key_prefix)),
        on_drift=drift_recorder(client, settings.key_prefix),
        circuit=circuit,
        window=Window(settings.settle_ms, int(settings.max_call_s * 1000)),
        fence=fence_rules(settings),
        marks=Marks(client, settings.key_prefix),
    )


def fence_rules(settings: Settings) -> FenceRules:
    """What the fence before a send checks (README "The fence"): the lease as set, what a send
    needs left of it (the longest call and the in-doubt window), the longest limiter wait."""
    need_ms = int(settings.max_call_s * 1000) + settings.settle_ms
    # A wait is held through (the lease extended) up to a whole lease, and never less than two
    # slots: a shorter limit would give up every slot it reserved, one after another.
    rps = settings.api_rate_limit_rps
    slots_ms = int(2000 / rps) if rps > 0 else 0
    return FenceRules(settings.lease_ttl_ms, need_ms, max(settings.lease_ttl_ms, slots_ms))


def build_runtime(settings: Settings) -> Runtime:
    """Everything a worker or publisher process needs, wired together."""
    client = redis_client(settings)
    broker = build_broker(settings, redis_client(settings, settings.broker_url()))
    counter = OutcomeCounter(client, settings.key_prefix)
    api = SubaccountClient.from_settings(settings, client, observer=call_observer(counter))
    store = build_store(settings, client)
    executor = build_executor(settings, store, api, client, counter)
    actor = declare_actor(broker, executor, settings, on_finish=metrics.observe_finish)
    return Runtime(
        settings=settings,
        redis=client,
        broker=broker,
        api=api,
        store=store,
        executor=executor,
        actor=actor,
        publisher=Publisher(client, settings),
        dead_letters=DeadLetters(client, settings.key_prefix),
        notify_actor=declare_notify_actor(broker, settings),
        outcome_counter=counter,
    )
