"""The API circuit breaker against real Redis and the sandbox (issue 22): an outage holds events
instead of spending their attempts, the down API gets about one probe per interval, and every
event is applied soon after recovery, with nobody replaying anything.

Calls to the down API are counted by the sandbox itself: the outage is `error_next` = a million
503s, and what is left of the counter says how many calls were answered 503.
"""

from __future__ import annotations

import json
import threading
import time

import redis

from handlers import examples as f
from handlers import username_for
from tests.integration.ops_support import cli, cli_json, pipeline_with
from tests.pipeline_support import wait_for_outcomes
from tests.servers import ThreadedUvicorn, wait_until
from worker import keys
from worker.ops.metrics import QueueCollector
from worker.pipeline.circuit import CircuitPolicy
from worker.pipeline.circuit_store import CircuitStore
from worker.pipeline.keyspace import Keyspace
from worker.sandbox import SandboxAdmin
from worker.settings import load_settings

THRESHOLD = 4
THREADS = 4  # the in-process pipeline's worker threads
PROBE_S = 0.25
CIRCUIT = {
    "circuit_enabled": True,
    "circuit_failure_threshold": THRESHOLD,
    "circuit_min_clients": 2,
    "circuit_window_s": 10.0,
    "circuit_probe_interval_s": PROBE_S,
    "retry_max_attempts": 2,  # without the breaker, this outage ends as dead letters
}
MILLION = 1_000_000
EVERY_CALL_FAILS = {"default": {"error_next": MILLION, "error_status": 503}}


def _onboard(rt: object, client: redis.Redis, clients: list[str]) -> None:
    events = [f.onboarded(c) for c in clients]
    rt.publisher.publish_many(events)  # type: ignore[attr-defined]
    found = wait_for_outcomes(client, [e["id"] for e in events])
    assert {o["outcome"] for o in found.values()} == {"applied"}


def _circuit_field(client: redis.Redis, operation: str, name: str) -> int:
    return int(client.hget(keys.circuit("saw", operation), name) or 0)


def _open_operations(client: redis.Redis) -> set[str]:
    return {m.decode() for m in client.zrange(keys.circuit_open("saw"), 0, -1)}


def _gauges(client: redis.Redis) -> dict[tuple[str, str], float]:
    """The circuit gauges the worker's /metrics serves (read from Redis at scrape time)."""
    collected = QueueCollector(
        client, "saw", "subaccount-events", Keyspace.of(load_settings())
    ).collect()
    return {
        (sample.name, sample.labels.get("operation", "")): sample.value
        for family in collected
        if family.name in ("saw_api_circuits_open", "saw_api_circuit_open")
        for sample in family.samples
    }


def test_an_outage_of_every_call_holds_the_events_and_heals_by_itself(
    redis_url: str,
    redis_client: redis.Redis,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
) -> None:
    """Every call answers 503 for a while: no dead letter, calls to the down API bounded by the
    opening threshold, the threads' calls in flight and one probe per interval; after recovery
    every invoice is granted exactly once without an operator."""
    clients = [f"cb-{n}" for n in range(12)]
    with pipeline_with(redis_url, sandbox_server, **CIRCUIT) as rt:
        _onboard(rt, redis_client, clients)
        sandbox.set_faults(EVERY_CALL_FAILS)
        started = time.monotonic()
        invoices = [f.invoice_paid(c, f"INV-{c}", 10 + n) for n, c in enumerate(clients)]
        rt.publisher.publish_many(invoices)
        wait_until(lambda: _circuit_field(redis_client, "get_credits", "probes") >= 6,
                   timeout_s=20, what="six probes of the open get_credits circuit")  # fmt: skip
        down_calls = MILLION - sandbox.faults()["default"]["error_next"]
        elapsed_s = time.monotonic() - started
        probes = _circuit_field(redis_client, "get_credits", "probes")
        assert _open_operations(redis_client) == {"get_credits"}  # the evidence read fails first
        api = cli_json(redis_url, "status")["api"]
        assert api["available"] is False
        assert api["unavailable_since"] is not None
        assert [c["operation"] for c in api["circuits"]] == ["get_credits"]
        assert "HTTP 503" in api["circuits"][0]["last_error"]
        assert "API unavailable since" in cli(redis_url, "status").stdout
        assert _gauges(redis_client) == {("saw_api_circuits_open", ""): 1.0,
                                         ("saw_api_circuit_open", "get_credits"): 1.0}  # fmt: skip
        sandbox.set_faults({})

        # at most one probe per interval since the circuit opened, and nothing else got through
        assert probes <= elapsed_s / PROBE_S + 1
        assert down_calls <= THRESHOLD + THREADS + probes, (down_calls, probes)
        found = wait_for_outcomes(redis_client, [e["id"] for e in invoices], timeout_s=15)
        assert {o["outcome"] for o in found.values()} == {"applied"}
        assert max(int(o["attempt"]) for o in found.values()) <= 2

    assert redis_client.hlen(keys.dead_letters("saw")) == 0
    assert _open_operations(redis_client) == set()
    last = redis_client.hget(keys.circuit_last("saw"), "get_credits")
    assert last is not None
    assert b'"closed_ms"' in last
    assert _gauges(redis_client) == {("saw_api_circuits_open", ""): 0.0}
    after = cli_json(redis_url, "status")["api"]
    assert after["available"] is True
    assert after["last_outage"]["operation"] == "get_credits"
    for n, client_id in enumerate(clients):
        grants = [e["amount"] for e in sandbox.journal(operation="add_credits",
                  username=username_for(client_id)) if e["applied"]]  # fmt: skip
        assert grants == [10 + n]


def test_an_outage_of_one_operation_holds_only_the_events_that_need_it(
    redis_url: str,
    redis_client: redis.Redis,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
) -> None:
    """Grants fail, everything else works: the add_credits circuit opens, the balance reads and
    profile updates go on, and the held grants go through once the API grants again."""
    payers = [f"op-pay-{n}" for n in range(8)]
    others = [f"op-upd-{n}" for n in range(4)]
    with pipeline_with(redis_url, sandbox_server, **CIRCUIT) as rt:
        _onboard(rt, redis_client, payers + others)
        sandbox.set_faults({"operations": {"add_credits": {"error_next": MILLION}}})
        invoices = [f.invoice_paid(c, f"INV-{c}", 5) for c in payers]
        rt.publisher.publish_many(invoices)
        wait_until(lambda: _open_operations(redis_client) == {"add_credits"},
                   timeout_s=10, what="the add_credits circuit to open")  # fmt: skip
        updates = [f.updated(c, t=60, email=f"new-{c}@example.com") for c in others]
        rt.publisher.publish_many(updates)
        found = wait_for_outcomes(redis_client, [e["id"] for e in updates])
        assert {o["outcome"] for o in found.values()} == {"applied"}
        assert _open_operations(redis_client) == {"add_credits"}
        sandbox.set_faults({})
        found = wait_for_outcomes(redis_client, [e["id"] for e in invoices], timeout_s=15)
        assert {o["outcome"] for o in found.values()} == {"applied"}
    assert redis_client.hlen(keys.dead_letters("saw")) == 0


def test_one_clients_failures_never_open_the_circuit_and_spend_its_attempts(
    redis_url: str,
    redis_client: redis.Redis,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
) -> None:
    """Only one client's grants fail (the others send nothing): that is not an outage of the
    API, so its attempts are spent and it is dead-lettered as before the breaker."""
    with pipeline_with(redis_url, sandbox_server, **CIRCUIT) as rt:
        _onboard(rt, redis_client, ["lonely"])
        sandbox.set_faults({"operations": {"add_credits": {"error_next": MILLION}}})
        invoices = [f.invoice_paid("lonely", f"INV-L{n}", 3) for n in range(6)]
        rt.publisher.publish_many(invoices)
        found = wait_for_outcomes(redis_client, [e["id"] for e in invoices], timeout_s=15)
    assert {(o["outcome"], o["reason"]) for o in found.values()} == {
        ("dead_lettered", "retries_exhausted")
    }
    assert _open_operations(redis_client) == set()
    assert not redis_client.exists(keys.circuit("saw", "add_credits"))


def test_every_worker_agrees_one_probe_per_interval(redis_client: redis.Redis) -> None:
    """Many workers ask for the probe of an open circuit at once: exactly one gets it, the rest
    are told when the next one is due; a failure after it keeps the circuit open."""
    policy = CircuitPolicy(failure_threshold=3, min_clients=2, window_ms=10_000,
                           probe_interval_ms=60_000)  # fmt: skip
    store = CircuitStore(redis_client, "saw", policy)
    verdicts = [store.failed("create", f"c{n % 2}", "503", True, 0) for n in range(3)]
    assert [v.is_open for v in verdicts] == [False, False, True]
    assert verdicts[-1].opened
    redis_client.hset(keys.circuit("saw", "create"), "probe_at_ms", 0)  # the probe is due

    answers = []
    barrier = threading.Barrier(8)

    def ask() -> None:
        barrier.wait()
        answers.append(store.try_probe("create"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(a.probe for a in answers) == 1
    assert all(a.is_open for a in answers)
    assert {a.probe_at_ms - a.now_ms for a in answers if not a.probe} <= set(range(59_000, 60_001))
    assert store.failed("create", "c0", "503", True, 0).is_open  # the probe failed
    assert store.close("create")
    assert not store.try_probe("create").is_open
    assert store.last_outages()["create"]["probes"] == "1"


def test_an_outage_longer_than_the_retry_age_limit_ends_in_dead_letters_that_say_why(
    redis_url: str,
    redis_client: redis.Redis,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
) -> None:
    """Events wait for an open circuit only up to `RETRY_MAX_AGE_S`: past it they are
    dead-lettered `retries_exhausted`, the detail naming the outage, never held forever."""
    clients = [f"age-{n}" for n in range(6)]
    with pipeline_with(redis_url, sandbox_server, **{**CIRCUIT, "retry_max_age_s": 2.0}) as rt:
        _onboard(rt, redis_client, clients)
        sandbox.set_faults(EVERY_CALL_FAILS)
        invoices = [f.invoice_paid(c, f"INV-{c}", 7) for c in clients]
        rt.publisher.publish_many(invoices)
        found = wait_for_outcomes(redis_client, [e["id"] for e in invoices], timeout_s=15)
        assert _open_operations(redis_client) == {"get_credits"}
    assert {(o["outcome"], o["reason"]) for o in found.values()} == {
        ("dead_lettered", "retries_exhausted")
    }
    details = [json.loads(raw)["detail"] for raw in redis_client.hvals(keys.dead_letters("saw"))]
    assert any("the API is unavailable for get_credits" in d for d in details), details


def test_a_partly_applied_event_keeps_its_client_while_it_waits_for_the_api(
    redis_url: str,
    redis_client: redis.Redis,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
) -> None:
    """Grants are down: an onboarding creates its subaccount, then waits for the grant without
    spending attempts and keeps the client's lease, so the client's next event cannot act on
    the half-made subaccount first; after recovery both apply, in order."""
    payers = [f"pa-pay-{n}" for n in range(6)]
    with pipeline_with(redis_url, sandbox_server, **CIRCUIT) as rt:
        _onboard(rt, redis_client, payers)
        sandbox.set_faults({"operations": {"add_credits": {"error_next": MILLION}}})
        rt.publisher.publish_many([f.invoice_paid(c, f"INV-{c}", 5) for c in payers])
        wait_until(lambda: _open_operations(redis_client) == {"add_credits"},
                   timeout_s=10, what="the add_credits circuit to open")  # fmt: skip
        onboarding = f.onboarded("newcomer", credits=50)
        rt.publisher.publish(onboarding)
        username = username_for("newcomer")
        wait_until(lambda: sandbox.journal(operation="create", username=username),
                   what="the newcomer's subaccount to be created")  # fmt: skip
        update = f.updated("newcomer", t=60, email="later@example.com")
        rt.publisher.publish(update)
        wait_until(lambda: _circuit_field(redis_client, "add_credits", "probes") >= 3,
                   what="three probes while the update waits")  # fmt: skip
        assert redis_client.get(keys.lock("saw", "newcomer")) is not None  # still held
        assert sandbox.journal(operation="update", username=username) == []
        sandbox.set_faults({})
        found = wait_for_outcomes(redis_client, [onboarding["id"], update["id"]], timeout_s=15)
    first, then = found[onboarding["id"]], found[update["id"]]
    assert (first["outcome"], then["outcome"]) == ("applied", "applied")
    assert int(first["at_ms"]) <= int(then["at_ms"])
    assert int(first["attempt"]) <= 2
    grants = [e["amount"] for e in sandbox.journal(operation="add_credits", username=username)
              if e["applied"]]  # fmt: skip
    assert grants == [50]
    assert redis_client.hlen(keys.dead_letters("saw")) == 0
