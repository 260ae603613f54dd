"""A rolling update as Kubernetes does it to a worker pod (deploy/README.md, "Rollouts"): SIGTERM
to the supervisor while grants are in flight. The old worker finishes what it is applying,
returns the rest to the queue and exits 0 within its shutdown timeout; the new worker applies the
rest; every grant is made exactly once."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import redis

from handlers import examples as f
from tests.pipeline_support import outcomes, wait_for_outcomes
from tests.servers import WorkerProcess, wait_until
from worker import keys
from worker.pipeline.publish import Publisher
from worker.sandbox import SandboxAdmin
from worker.settings import load_settings

CLIENTS = [f"roll-{i}" for i in range(4)]
SHUTDOWN_TIMEOUT_S = 10
CALL_S = 1.0


def _in_flight(redis_client: redis.Redis, events: list[dict[str, object]]) -> set[str]:
    from handlers import parse_event

    flying = set()
    for event in events:
        raw = redis_client.hget(keys.ledger("saw", parse_event(event).key), "add_credits")
        if raw is not None and json.loads(raw)["state"] == "in_progress":
            flying.add(str(event["id"]))
    return flying


def test_sigterm_mid_grant_finishes_in_flight_and_hands_the_rest_over(
    start_worker: Callable[..., WorkerProcess], sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    publisher = Publisher(redis_client, load_settings())
    onboards = [f.onboarded(client) for client in CLIENTS]
    old = start_worker(
        "--processes",
        "1",
        "--threads",
        "2",
        SUBACCOUNT_WORKER_WORKER_SHUTDOWN_TIMEOUT_MS=str(SHUTDOWN_TIMEOUT_S * 1000),
    )
    publisher.publish_many(onboards)
    wait_for_outcomes(redis_client, [e["id"] for e in onboards], timeout_s=60)
    sandbox.set_faults({"operations": {"add_credits": {"latency_ms": int(CALL_S * 1000)}}})
    grants = [f.invoice_paid(client, f"INV-{client}", 100) for client in CLIENTS]
    publisher.publish_many(grants)
    wait_until(lambda: _in_flight(redis_client, grants), what="a grant in flight")
    flying = _in_flight(redis_client, grants)

    assert old.proc is not None
    stopped = time.monotonic()
    old.proc.terminate()  # what the kubelet sends the container's PID 1
    assert old.proc.wait(timeout=SHUTDOWN_TIMEOUT_S + 10) == 0
    drained_s = time.monotonic() - stopped
    assert drained_s < SHUTDOWN_TIMEOUT_S  # it did not need the timeout, let alone the grace
    done = {o["event_id"]: o["outcome"] for o in outcomes(redis_client)}
    assert all(done.get(event_id) == "applied" for event_id in flying), (flying, done)
    assert len([e for e in grants if e["id"] in done]) < len(grants)  # the rest went back

    start_worker("--processes", "1", "--threads", "2")  # the new pod
    found = wait_for_outcomes(redis_client, [e["id"] for e in grants], timeout_s=60)
    assert {r["outcome"] for r in found.values()} == {"applied"}
    applied = [e for e in sandbox.journal(operation="add_credits") if e["applied"]]
    assert len(applied) == len(CLIENTS)
    assert len({e["username"] for e in applied}) == len(CLIENTS)  # one per client, none twice
