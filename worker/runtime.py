"""Build the long-lived objects of one process from settings: Redis, broker, client, executor.

Nothing here runs at import time; `worker.actors` (the module Dramatiq's CLI loads) and the tests
call `build_runtime` with the settings they want.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import redis
from dramatiq.brokers.redis import RedisBroker

from handlers import Context
from worker.api.client import SubaccountClient
from worker.credits.notify import declare_notify_actor
from worker.credits.reconcile import drift_recorder
from worker.ops import metrics
from worker.ops.dead_letters import DeadLetters
from worker.pipeline.attempts import AttemptStore
from worker.pipeline.broker import build_broker, declare_actor
from worker.pipeline.executor import Executor, Limits
from worker.pipeline.fence import FenceRules
from worker.pipeline.in_doubt import Marks, Window
from worker.pipeline.publish import Publisher, event_limits
from worker.pipeline.retry import RetryPolicy
from worker.pipeline.steps import StepRunner
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
    notify_actor: Any = None  # delivers credit notifications (issue 14), on its own queue

    def close(self) -> None:
        self.api.close()
        self.broker.close()
        self.store.close()
        self.redis.close()


def redis_client(settings: Settings) -> redis.Redis:
    """One pooled Redis client per process, with timeouts so an outage fails fast."""
    pool_size = settings.worker_threads * 2 + 8
    return redis.Redis.from_url(
        settings.redis_url,
        max_connections=pool_size,
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
        health_check_interval=30,
    )


def build_store(settings: Settings, client: redis.Redis) -> AttemptStore:
    return AttemptStore(
        client,
        settings.key_prefix,
        lock_ttl_ms=settings.lease_ttl_ms,  # the lock TTL plus the in-doubt window
        ledger_ttl_s=settings.ledger_ttl_s,
        outcome_maxlen=settings.outcome_stream_maxlen,
        timeline_maxlen=settings.timeline_maxlen,
    )


def build_executor(
    settings: Settings, store: AttemptStore, api: SubaccountClient, client: redis.Redis
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
    return Executor(
        store,
        StepRunner(api),
        ctx,
        policy,
        limits,
        rng=random.Random(),
        observer=metrics.record_outcome,
        on_drift=drift_recorder(client, settings.key_prefix),
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
    broker = build_broker(settings, client)
    api = SubaccountClient.from_settings(settings, client, observer=metrics.observe_call)
    store = build_store(settings, client)
    executor = build_executor(settings, store, api, client)
    actor = declare_actor(broker, executor, settings)
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
    )
