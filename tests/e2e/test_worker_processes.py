"""Real `subaccount-worker worker` processes: killed mid-call, poisoned, slow, counted."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
import redis

from handlers import examples as f
from handlers import username_for
from tests.pipeline_support import outcomes, wait_for_outcomes
from tests.servers import WorkerProcess, free_port, wait_until
from worker import keys
from worker.pipeline.publish import Publisher
from worker.sandbox import SandboxAdmin
from worker.settings import load_settings

pytestmark = pytest.mark.e2e

StartWorker = Callable[..., WorkerProcess]


def _publisher(redis_client: redis.Redis) -> Publisher:
    return Publisher(redis_client, load_settings())


def _in_flight(redis_client: redis.Redis, event: dict[str, object], step: str) -> bool:
    from handlers import parse_event

    raw = redis_client.hget(keys.ledger("saw", parse_event(event).key), step)
    return raw is not None and json.loads(raw)["state"] == "in_progress"


def test_worker_killed_mid_call_completes_once_on_another(
    start_worker: StartWorker, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """SIGKILL while the grant is in flight; a new worker finishes the event with one grant."""
    publisher = _publisher(redis_client)
    first = start_worker("--processes", "1", "--threads", "2")
    onboard = f.onboarded("kim")
    publisher.publish(onboard)
    wait_for_outcomes(redis_client, [onboard["id"]], timeout_s=30)
    sandbox.set_faults({"operations": {"add_credits": {"latency_ms": 2000}}})
    paid = f.invoice_paid("kim", "INV-1", 120)
    publisher.publish(paid)
    wait_until(lambda: _in_flight(redis_client, paid, "add_credits"), what="grant in flight")
    first.kill()
    start_worker("--processes", "1", "--threads", "2")
    found = wait_for_outcomes(redis_client, [paid["id"]], timeout_s=40)
    assert found[paid["id"]]["outcome"] == "applied"
    grants = [e for e in sandbox.journal(operation="add_credits") if e["applied"]]
    assert len(grants) == 1
    assert grants[0]["amount"] == 120
    assert sandbox.state()["subaccounts"][username_for("kim")]["balance"] == 120


def test_poison_message_is_dead_lettered_while_others_flow(
    start_worker: StartWorker, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """An event that kills its worker every time ends as `poison_message`; others complete."""
    publisher = _publisher(redis_client)
    start_worker(
        "--processes", "1", "--threads", "1", "--module", "tests.e2e.crashing_actors",
        SUBACCOUNT_WORKER_MAX_DELIVERIES="2",
    )  # fmt: skip
    poison = f.onboarded("p1", username="poison-1")
    healthy = [f.onboarded(f"ok{i}") for i in range(4)]
    publisher.publish_many([healthy[0], healthy[1], poison, healthy[2], healthy[3]])
    found = wait_for_outcomes(redis_client, [e["id"] for e in [poison, *healthy]], timeout_s=90)
    assert found[poison["id"]]["outcome"] == "dead_lettered"
    assert found[poison["id"]]["reason"] == "poison_message"
    assert all(found[e["id"]]["outcome"] == "applied" for e in healthy)
    assert sandbox.journal(username="poison-1") == []


def _acks_in_use(broker_client: redis.Redis) -> list[bytes]:
    """Dramatiq's per-worker sets of delivered, unacknowledged messages that hold one."""
    pattern = keys.dramatiq_namespace("saw") + ":__acks__.*"
    return [key for key in broker_client.scan_iter(match=pattern) if broker_client.scard(key)]


def _outcomes_of(redis_client: redis.Redis, event_id: str) -> list[tuple[str, str]]:
    """(outcome, reason) of every record of `event_id` in the outcome stream, oldest first."""
    records = outcomes(redis_client)
    return [(o["outcome"], o["reason"]) for o in records if o["event_id"] == event_id]


def test_slow_step_beyond_heartbeat_runs_once(
    start_worker: StartWorker,
    sandbox: SandboxAdmin,
    redis_client: redis.Redis,
    broker_client: redis.Redis,
) -> None:
    """A worker whose heartbeat stops mid-call loses its message: Dramatiq re-queues it and
    another worker gets it. The lease makes that second delivery wait, then find the event
    finished: one effect, one `applied`, and the redelivery recorded as a `duplicate`."""
    publisher = _publisher(redis_client)
    lease = {"SUBACCOUNT_WORKER_LOCK_TTL_MS": "60000"}  # outlasts the pause and a slow start
    first = start_worker("--processes", "1", "--threads", "2", **lease)
    onboard = f.onboarded("slow")
    publisher.publish(onboard)
    wait_for_outcomes(redis_client, [onboard["id"]], timeout_s=30)
    sandbox.set_faults({"operations": {"disable": {"latency_ms": 1500}}})
    suspend = f.suspended("slow", t=5)
    publisher.publish(suspend)
    lock = keys.lock("saw", "slow")
    wait_until(lambda: redis_client.exists(lock), what="the suspension under way")
    [held_by_first] = _acks_in_use(broker_client)
    first.pause()  # alive but silent: no heartbeat for longer than the 1 s timeout
    start_worker("--processes", "1", "--threads", "2", **lease)
    wait_until(
        lambda: not broker_client.exists(held_by_first),
        timeout_s=30,
        what="Dramatiq re-queueing the silent worker's message",
    )
    first.resume()
    wait_until(
        lambda: len(_outcomes_of(redis_client, suspend["id"])) >= 2,
        timeout_s=40,
        what="both deliveries' outcomes",
    )
    assert _outcomes_of(redis_client, suspend["id"]) == [
        ("applied", ""),
        ("duplicate", "already applied"),
    ]
    calls = sandbox.journal(operation="disable")
    assert [e["applied"] for e in calls] == [True]


def test_metrics_merge_both_worker_processes(
    start_worker: StartWorker, sandbox: SandboxAdmin, redis_client: redis.Redis, tmp_path: object
) -> None:
    """`--processes 2` serves one /metrics with both processes and the queue gauges."""
    port = free_port()
    start_worker(
        "--processes", "2", "--threads", "2",
        SUBACCOUNT_WORKER_METRICS_PORT=str(port), SUBACCOUNT_WORKER_METRICS_DIR=str(tmp_path),
    )  # fmt: skip
    events = [f.onboarded(f"m{i}") for i in range(12)]
    _publisher(redis_client).publish_many(events)
    wait_for_outcomes(redis_client, [e["id"] for e in events], timeout_s=30)

    def scrape() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return ""

    applied = 'saw_events_total{event_type="client.onboarded",outcome="applied"} 12.0'
    wait_until(lambda: applied in scrape(), timeout_s=15, what="merged counters")
    text = scrape()
    pids = {line.split('pid="')[1].split('"')[0] for line in text.splitlines()
            if line.startswith("saw_worker_up{")}  # fmt: skip
    assert len(pids) == 2
    assert "saw_queue_depth 0.0" in text
    assert "saw_api_call_seconds_bucket" in text
