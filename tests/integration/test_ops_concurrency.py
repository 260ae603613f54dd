"""Replays racing each other and the worker: no spurious failure, no double effect (issue 10.8)."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis

from handlers import examples as f
from handlers.events import parse_event
from tests.integration.ops_support import write_dead_letter
from worker import keys
from worker.ops.dead_letters import DeadLetters
from worker.ops.jobs import JobResult, Runner
from worker.ops.plans import plan, select
from worker.ops.replay import replay
from worker.pipeline.attempts import AttemptStore
from worker.pipeline.keyspace import Keyspace
from worker.pipeline.publish import Publisher
from worker.settings import load_settings

QUEUE = keys.dramatiq_queue("saw", "subaccount-events")


def run_threads(targets: list[Callable[[], Any]]) -> list[Any]:
    """Start every target at once (a barrier), join them, re-raise the first error."""
    barrier = threading.Barrier(len(targets))
    results: list[Any] = [None] * len(targets)
    errors: list[BaseException] = []

    def wrap(i: int, fn: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(i, fn)) for i, fn in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return results


def queued_keys(client: redis.Redis) -> Counter[str]:
    (bodies,) = Keyspace(data_db=0, broker_db=1).read(client, lambda p: p.hvals(f"{QUEUE}.msgs"))
    return Counter(parse_event(json.loads(body)["args"][0]).key for body in bodies)


def test_parallel_replay_jobs_and_new_dead_letters_never_collide(redis_url: str) -> None:
    """Six overlapping replay jobs and the worker writing 200 new dead letters meanwhile: every
    outage dead letter is replayed exactly once in all, the only skips name the other job, and
    every new dead letter stays, counted once."""
    client = redis.Redis.from_url(redis_url)
    settings = load_settings(redis_url=redis_url)
    store = AttemptStore(client, "saw", lock_ttl_ms=5000, ledger_ttl_s=3600, outcome_maxlen=10_000)
    outage = {write_dead_letter(store, f.invoice_paid(f"c{n}", f"INV-{n}", 5), "retries_exhausted")
              for n in range(600)}  # fmt: skip
    plans = [plan(client, "saw", select(client, "saw", ids=sorted(outage))) for _ in range(6)]

    def job(i: int) -> Callable[[], JobResult]:
        runner = Runner(client, "saw", Publisher(client, settings), batch=50 + 7 * i)
        return lambda: runner.run(plans[i], operator=f"op{i}")

    def worker() -> set[str]:
        return {write_dead_letter(store, f.invoice_paid(f"new{n}", f"NEW-{n}", 1), "client_unknown")
                for n in range(200)}  # fmt: skip

    *results, fresh = run_threads([job(i) for i in range(6)] + [worker])
    replayed = Counter(key for result in results for key in result.done)
    assert set(replayed) == outage
    assert max(replayed.values()) == 1
    whys = {item["why"] for result in results for item in result.skipped}
    assert whys <= {
        "another job is acting on it",
        "gone since the plan (replayed or purged meanwhile)",
    }
    assert queued_keys(client) == Counter(outage)
    dead = DeadLetters(client, "saw")
    assert {letter.key for letter in dead.list(limit=10_000)} == fresh
    assert dead.counts_by_reason() == {"client_unknown": 200}
    client.close()


def test_single_replays_in_parallel_all_succeed_while_the_worker_writes(redis_url: str) -> None:
    """Eight operators replaying different dead letters at once while new ones arrive: none is
    told "changed while replaying" (the old whole-hash WATCH failed 24 of 847 like this)."""
    client = redis.Redis.from_url(redis_url)
    settings = load_settings(redis_url=redis_url)
    store = AttemptStore(client, "saw", lock_ttl_ms=5000, ledger_ttl_s=3600, outcome_maxlen=10_000)
    targets = [write_dead_letter(store, f.invoice_paid(f"s{n}", f"S-{n}", 3), "retries_exhausted")
               for n in range(160)]  # fmt: skip
    publisher = Publisher(client, settings)
    dead = DeadLetters(client, "saw")

    def operator(share: list[str]) -> list[str]:
        return [replay(client, publisher, dead, "saw", key).key for key in share]

    def worker() -> None:
        for n in range(300):
            write_dead_letter(store, f.invoice_paid(f"w{n}", f"W-{n}", 1), "client_unknown")

    shares = [targets[i::8] for i in range(8)]
    *done, _ = run_threads([lambda s=share: operator(s) for share in shares] + [worker])
    assert sorted(key for keys_ in done for key in keys_) == sorted(targets)
    assert queued_keys(client) == Counter(targets)
    assert dead.counts_by_reason() == {"client_unknown": 300}
    client.close()


def test_a_confirmation_acts_only_on_what_was_previewed(redis_url: str) -> None:
    """The console's two steps: a dead letter replaced between preview and confirm (replayed,
    dead-lettered again) is refused, the others replayed."""
    client = redis.Redis.from_url(redis_url)
    settings = load_settings(redis_url=redis_url)
    store = AttemptStore(client, "saw", lock_ttl_ms=5000, ledger_ttl_s=3600, outcome_maxlen=1000)
    events = [f.invoice_paid(f"p{n}", f"P-{n}", 2) for n in range(3)]
    ids = [write_dead_letter(store, e, "retries_exhausted") for e in events]
    preview = plan(client, "saw", select(client, "saw", ids=ids))
    digests = {item.id: item.digest for item in preview.items}
    again = dataclasses.replace(DeadLetters(client, "saw").get(ids[0]), attempts=5)  # type: ignore[type-var]
    client.hset(keys.dead_letters("saw"), ids[0], again.encode())  # dead-lettered again
    confirmed = plan(client, "saw", select(client, "saw", ids=ids), previewed=digests)
    assert [item.id for item in confirmed.refused] == [ids[0]]
    result = Runner(client, "saw", Publisher(client, settings)).run(confirmed, operator="web")
    assert sorted(result.done) == sorted(ids[1:])
    client.close()
