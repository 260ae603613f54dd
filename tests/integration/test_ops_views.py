"""Acceptance: `status` matches a queue state the test built; `clients show` and `events show`
tell a client's story (a duplicate, a superseded suspension, a dead letter and its replay)."""

from __future__ import annotations

import time

import redis

from handlers import examples as f
from handlers.events import parse_event
from tests.integration.ops_support import cli, cli_json, outcomes_of, pipeline_with
from tests.pipeline_support import pipeline_settings, wait_for_outcomes
from tests.servers import ThreadedUvicorn, wait_until
from worker import keys
from worker.ops.status import read_status
from worker.pipeline.keyspace import Keyspace
from worker.pipeline.publish import build_message
from worker.runtime import build_runtime
from worker.sandbox import SandboxAdmin


def _in_flight(redis_client: redis.Redis) -> int:
    keyspace = Keyspace(data_db=0, broker_db=1)  # the test settings' databases
    return read_status(
        redis_client, "saw", "subaccount-events", 60_000, keyspace=keyspace
    ).in_flight


def test_status_reads_the_queue_with_no_worker_and_with_one_mid_call(
    redis_url: str,
    redis_client: redis.Redis,
    broker_client: redis.Redis,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
) -> None:
    """Three queued, two delayed and a dead letter with every worker down; then a worker takes
    the three and is mid-call on each: they show in flight, the delayed stay delayed."""
    settings = pipeline_settings(redis_url, f"{sandbox_server.url}/v6", "k")
    publisher_rt = build_runtime(settings)
    queued = [f.onboarded(f"st-{n}") for n in range(3)]
    publisher_rt.publisher.publish_many(queued)
    for n in range(2):  # as RedisBroker.enqueue(delay=) writes them (without its heartbeat)
        later = build_message(parse_event(f.onboarded(f"later-{n}")), settings.queue_name)
        later = later.copy(queue_name=f"{settings.queue_name}.DQ",
                           options={"eta": int(time.time() * 1000) + 600_000})  # fmt: skip
        delay_queue = keys.dramatiq_queue("saw", later.queue_name)
        broker_client.hset(f"{delay_queue}.msgs", later.options["redis_message_id"], later.encode())
        broker_client.rpush(delay_queue, later.options["redis_message_id"])
    redis_client.hset("saw:dead", "k1", "{}")
    redis_client.hset("saw:dead:counts", "permanent_error", 1)
    redis_client.zadd("saw:dead:index", {"k1": 1_700_000_000_000})
    publisher_rt.close()

    down = cli_json(redis_url, "status")
    assert {k: down[k] for k in ("queued", "delayed", "in_flight", "workers", "dead_letters")} == {
        "queued": 3,
        "delayed": 2,
        "in_flight": 0,
        "workers": 0,
        "dead_letters": {"permanent_error": 1},
    }
    assert down["oldest_queued_age_s"] >= 0
    assert down["oldest_dead_letter_at"] == "2023-11-14T22:13:20.000Z"

    sandbox.set_faults({"operations": {"create": {"latency_ms": 4000}}})
    with pipeline_with(redis_url, sandbox_server, api_read_timeout_s=10.0):
        wait_until(lambda: _in_flight(redis_client) == 3, what="three messages in flight")
        busy = cli_json(redis_url, "status")
        sandbox.set_faults({})
    assert (busy["queued"], busy["in_flight"], busy["workers"]) == (0, 3, 1)
    assert busy["delayed"] == 2
    assert busy["oldest_queued_age_s"] is None
    table = cli(redis_url, "status")
    assert table.returncode == 0
    assert "in flight" in table.stdout


def test_a_clients_story_and_an_events_story(
    redis_url: str,
    redis_client: redis.Redis,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
) -> None:
    """Onboarding, an invoice and its duplicate report, a reactivation that supersedes an older
    suspension, a grant dead-lettered in an outage and replayed: all on the client's timeline,
    newest first, and on the event's own page."""
    with pipeline_with(redis_url, sandbox_server, retry_max_attempts=2) as rt:

        def run(event: dict[str, object]) -> str:
            rt.publisher.publish(event)
            wait_for_outcomes(redis_client, [str(event["id"])])
            return str(event["id"])

        run(f.onboarded("tia", t=0))
        paid = run(f.invoice_paid("tia", "INV-1", 10, t=1))
        dup = run({**f.invoice_paid("tia", "INV-1", 10, t=2), "source": "urn:stripe"})
        run(f.reactivated("tia", t=20))
        suspension = run(f.suspended("tia", t=10))
        sandbox.set_faults({"operations": {"add_credits": {"error_rate": 1.0}}})
        lost = run(f.invoice_paid("tia", "INV-2", 25, t=30))
        sandbox.set_faults({})
        (letter,) = cli_json(redis_url, "dead-letters", "list", "--client", "tia")
        assert cli(redis_url, "dead-letters", "replay", letter["id"], "--yes").returncode == 0
        wait_until(lambda: outcomes_of(redis_client, lost)[-1:] == ["applied"], what="replay")

    story = cli_json(redis_url, "clients", "show", "tia")
    assert story["client_id"] == "tia"
    assert story["state"]["lifecycle"] == "active"
    lines = [(i["event_id"], i["outcome"]) for i in story["timeline"]]
    assert lines[:3] == [(lost, "applied"), (lost, "replayed"), (lost, "dead_lettered")]
    assert (suspension, "superseded") in lines
    assert (dup, "duplicate") in lines
    assert (paid, "applied") in lines
    times = [i["time"] for i in story["timeline"]]
    assert times == sorted(times, reverse=True)
    assert story["timeline"][0]["replay"] == 1
    assert story["timeline"][0]["results"]["add_credits"] != {}
    assert story["dead_letters"] == []

    event = cli_json(redis_url, "events", "show", lost)
    assert (event["client_id"], event["type"], event["replays"]) == ("tia", "invoice.paid", 1)
    assert [o["outcome"] for o in event["outcomes"]] == ["applied", "replayed", "dead_lettered"]
    assert [(s["name"], s["state"]) for s in event["steps"]] == [("add_credits", "done")]
    assert event["finished"] == "applied"
    assert event["dead_letter"] is None
    unknown = cli(redis_url, "events", "show", "no-such-event")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: no event")
