"""Acceptance: recovering from an API outage with the operators' commands, as on-call would."""

from __future__ import annotations

import time

import redis

from handlers import examples as f
from handlers import username_for
from tests.integration.ops_support import cli, cli_json, outcomes_of, pipeline_with
from tests.pipeline_support import wait_for_outcomes
from tests.servers import ThreadedUvicorn, wait_until
from worker import keys
from worker.pipeline.keyspace import Keyspace
from worker.sandbox import SandboxAdmin

CLIENTS = [f"outage-{n}" for n in range(8)]


def test_an_outage_is_told_apart_planned_and_replayed_in_one_command(
    redis_url: str,
    redis_client: redis.Redis,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
) -> None:
    """Every grant fails for a while; two genuinely bad events fail for their own reasons. The
    summary separates them, a dry run changes nothing, one command replays exactly the outage's
    dead letters, each invoice is granted once, the bad ones remain and the audit has the job."""
    with pipeline_with(
        redis_url, sandbox_server, retry_max_attempts=2, unknown_client_wait_s=0.05
    ) as rt:
        onboard = [f.onboarded(c) for c in CLIENTS]
        rt.publisher.publish_many(onboard)
        wait_for_outcomes(redis_client, [e["id"] for e in onboard])
        sandbox.set_faults({"operations": {"add_credits": {"error_rate": 1.0}}})
        outage_start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
        invoices = [f.invoice_paid(c, f"INV-{c}", 10 + n) for n, c in enumerate(CLIENTS)]
        bad = [f.invoice_paid("never-onboarded", "INV-X1", 5),
               f.invoice_paid("never-onboarded-2", "INV-X2", 6)]  # fmt: skip
        rt.publisher.publish_many(invoices + bad)
        wait_for_outcomes(redis_client, [e["id"] for e in invoices + bad])

        summary = cli_json(redis_url, "dead-letters", "summary")
        lines = {(c["reason"], c["step"], c["status"]): c["count"] for c in summary["clusters"]}
        assert lines == {
            ("retries_exhausted", "add_credits", 503): len(CLIENTS),
            ("client_unknown", None, None): 2,
        }
        listed = cli_json(redis_url, "dead-letters", "list", "--reason", "retries_exhausted")
        assert {row["subject"] for row in listed} == set(CLIENTS)
        assert {"id", "event_id", "type", "source", "attempts", "detail", "first_failed_at",
                "last_failed_at"} <= set(listed[0])  # fmt: skip

        replay_args = ("dead-letters", "replay", "--reason", "retries_exhausted",
                       "--since", outage_start)  # fmt: skip
        before = _snapshot(redis_client)
        plan = cli_json(redis_url, *replay_args, "--dry-run")
        assert plan["planned"] == len(CLIENTS)
        assert {i["client_id"]: (i["calls"], i["credits"]) for i in plan["items"]} == {
            c: (["add_credits"], 10 + n) for n, c in enumerate(CLIENTS)
        }
        assert _snapshot(redis_client) == before  # the dry run changed nothing

        sandbox.set_faults({})
        result = cli_json(redis_url, *replay_args, "--yes", "--operator", "alice")
        assert result["planned"] == result["replayed"] == len(CLIENTS)
        assert result["refused"] == []
        assert result["skipped"] == []
        for invoice in invoices:
            wait_until(lambda e=invoice: outcomes_of(redis_client, e["id"])[-1:] == ["applied"],
                       what=f"the replayed {invoice['id']}")  # fmt: skip

    for n, client_id in enumerate(CLIENTS):
        grants = [e["amount"] for e in sandbox.journal(operation="add_credits",
                  username=username_for(client_id)) if e["applied"]]  # fmt: skip
        assert grants == [10 + n]
    remaining = cli_json(redis_url, "dead-letters", "list")
    assert sorted(row["subject"] for row in remaining) == ["never-onboarded", "never-onboarded-2"]
    (job,) = cli_json(redis_url, "dead-letters", "jobs")
    entries = cli_json(redis_url, "audit", "list")
    (entry,) = [e for e in entries if e["action"] == "replay"]
    assert (entry["action"], entry["operator"], entry["count"]) == ("replay", "alice", len(CLIENTS))
    assert {e["action"] for e in entries} == {"replay_started", "replay", "replay_settled"}
    assert (job["id"], job["state"], job["done"]) == (entry["job_id"], "finished", len(CLIENTS))
    assert job["outcomes"]["applied"] == len(CLIENTS)
    table = cli(redis_url, "dead-letters", "list")
    assert table.returncode == 0
    assert "2 of 2 shown" in table.stdout


def test_replay_and_purge_need_a_scope_and_refuse_bad_input(redis_url: str) -> None:
    """No ids, filter or --all: usage error (2); a bad time or limit: 2, one line, no traceback."""
    for args in (
        ("dead-letters", "replay", "--yes"),
        ("dead-letters", "purge", "--yes"),
        ("dead-letters", "list", "--limit", "0"),
        ("dead-letters", "list", "--limit", "-1"),
        ("dead-letters", "list", "--since", "yesterday-ish"),
        ("dead-letters", "replay", "--reason", "x", "--resolve", "maybe"),
        ("dead-letters", "list", "--reason", "client-unknown"),
        ("dead-letters", "list", "--type", "invoice_paid"),
        ("dead-letters", "summary", "--step", "credits"),
        ("dead-letters", "list", "--status", "5xx"),
    ):
        done = cli(redis_url, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ")
        assert "Traceback" not in done.stderr
    typo = cli(redis_url, "dead-letters", "list", "--reason", "client-unknown")
    assert "client_unknown" in typo.stderr
    assert "retries_exhausted" in typo.stderr  # the valid values are named
    missing = cli(redis_url, "dead-letters", "replay", "no-such-id", "--yes", "--json")
    assert missing.returncode == 1
    assert '"no such dead letter"' in missing.stdout


def _snapshot(client: redis.Redis) -> tuple[object, ...]:
    queue = keys.dramatiq_queue("saw", "subaccount-events")
    return (
        client.hgetall(keys.dead_letters("saw")),
        Keyspace.default().read(client, lambda p: p.llen(queue)),
        client.hgetall(keys.dead_letter_counts("saw")),
    )
