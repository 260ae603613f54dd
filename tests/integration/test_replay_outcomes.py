"""Replay jobs report what became of each replayed event, not just that it was re-queued.

The world's assumption broken on purpose: a replayed event can fail again (its subaccount is
still missing), so "replayed" must not read as "fixed"; a replay killed mid-way must still be in
the audit; a replay that matches nothing must leave no trace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import redis

from handlers import examples as f
from handlers import username_for
from tests.integration.ops_support import (
    cli,
    cli_json,
    job_progress,
    make_dead_letters,
    pipeline_with,
)
from tests.pipeline_support import wait_for_outcomes
from tests.servers import ThreadedUvicorn, wait_until
from worker.ops.audit import list_audit
from worker.ops.job_records import list_jobs
from worker.sandbox import SandboxAdmin

LATE = ["late-1", "late-2"]  # not onboarded when their invoices came: client_unknown
GONE = "gone-1"  # its subaccount deleted at the API: not_found, and again after a replay


def test_replay_wait_reports_applied_and_dead_lettered_again(
    redis_url: str,
    redis_client: redis.Redis,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
) -> None:
    """Three dead letters replayed with `--wait`: the two whose client now exists are applied,
    the one whose subaccount is still gone is dead-lettered again; the job is `finished` only
    then, `--wait` exits 1, and `jobs`, `--json` and the audit (started, ended, settled) say
    so. A second replay that matches nothing starts no job and writes no audit entry."""
    with pipeline_with(
        redis_url, sandbox_server, retry_max_attempts=2, unknown_client_wait_s=0.05
    ) as rt:
        onboard = f.onboarded(GONE)
        rt.publisher.publish_many([onboard])
        wait_for_outcomes(redis_client, [onboard["id"]])
        sandbox.set_state({"subaccounts": {username_for(GONE): None}})
        invoices = [f.invoice_paid(c, f"INV-{c}", 7) for c in [*LATE, GONE]]
        rt.publisher.publish_many(invoices)
        wait_for_outcomes(redis_client, [e["id"] for e in invoices])
        reasons = {r["subject"]: r["reason"] for r in cli_json(redis_url, "dead-letters", "list")}
        assert reasons == {"late-1": "client_unknown", "late-2": "client_unknown",
                           GONE: "not_found"}  # fmt: skip
        welcome = [f.onboarded(c) for c in LATE]
        rt.publisher.publish_many(welcome)
        wait_for_outcomes(redis_client, [e["id"] for e in welcome])

        args = ("dead-letters", "replay", "--all", "--yes", "--wait", "--operator", "alice")
        result = cli_json(redis_url, *args, code=1)
        assert result["replayed"] == 3
        assert result["state"] == "finished"
        expected = {"applied": 2, "duplicate": 0, "superseded": 0, "ignored": 0,
                    "dead_lettered_again": 1, "pending": 0}  # fmt: skip
        assert result["outcomes"] == expected

        (job,) = cli_json(redis_url, "dead-letters", "jobs")
        assert (job["id"], job["state"], job["settled"]) == (result["job_id"], "finished", True)
        assert job["outcomes"]["dead_lettered_again"] == 1
        assert job["again_reasons"] == {"not_found": 1}
        table = cli(redis_url, "dead-letters", "jobs")
        assert "2 applied" in table.stdout
        assert "1 dead-lettered again" in table.stdout

        actions = [(e.action, e.job_id) for e in list_audit(redis_client, "saw")]
        assert actions == [("replay_settled", job["id"]), ("replay", job["id"]),
                           ("replay_started", job["id"])]  # fmt: skip

        nothing = cli(redis_url, "dead-letters", "replay", "--reason", "client_unknown", "--yes")
        assert nothing.returncode == 0, nothing.stderr
        assert "nothing to replay" in nothing.stdout
        assert len(list_jobs(redis_client, "saw")) == 1
        assert len(list_audit(redis_client, "saw")) == 3


def test_a_replay_without_yes_off_a_terminal_refuses_before_anything(redis_url: str) -> None:
    """Non-interactive and no `--yes`: exit 2, no job, no audit entry (even for zero matches)."""
    client = redis.Redis.from_url(redis_url)
    make_dead_letters(client, 2)
    for args in (("--all",), ("--reason", "client_unknown")):
        done = cli(redis_url, "dead-letters", "replay", *args, stdin="")
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "--yes" in done.stderr
    assert list_jobs(client, "saw") == []
    assert list_audit(client, "saw") == []
    client.close()


def test_a_killed_replay_is_in_the_audit_as_started(redis_url: str) -> None:
    """`kill -9` during a paced replay: the audit holds its `replay_started` entry (with the
    planned count) and no end; `jobs` still shows it running until it goes stale."""
    client = redis.Redis.from_url(redis_url)
    make_dead_letters(client, 120)
    env = {**os.environ, "SUBACCOUNT_WORKER_REDIS_URL": redis_url}
    args = ["dead-letters", "replay", "--all", "--yes", "--rate", "20", "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    wait_until(lambda: job_progress(client) > 0, what="the replay's first batch")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    (entry,) = list_audit(client, "saw")
    assert (entry.action, entry.result["planned"], entry.count) == ("replay_started", 120, 120)
    (job,) = list_jobs(client, "saw")
    assert job.id == entry.job_id
    assert job.state == "running"
    assert job.finished_ms is None
    assert json.loads(json.dumps(job.to_json()))["outcomes"]["pending"] == job.pending > 0
    client.close()


def test_with_json_logs_the_audit_line_stays_out_of_the_commands_output(redis_url: str) -> None:
    """JSON logs on: the replay's output is the command's own (no `ops.action` log line in
    the middle of it), and the audit still holds the entry."""
    client = redis.Redis.from_url(redis_url)
    make_dead_letters(client, 2)
    env = {**os.environ, "SUBACCOUNT_WORKER_REDIS_URL": redis_url}
    env |= {"SUBACCOUNT_WORKER_LOG_FORMAT": "json", "SUBACCOUNT_WORKER_LOG_LEVEL": "INFO"}
    done = subprocess.run([sys.executable, "-m", "worker.cli", "dead-letters", "replay", "--all",
                           "--yes"], env=env, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ops.action" not in done.stdout + done.stderr
    assert {e.action for e in list_audit(client, "saw")} == {"replay_started", "replay"}
    client.close()


def test_events_show_of_an_unknown_id_says_it_is_unknown(redis_url: str) -> None:
    """`events show nope`: not "give --source" (there is no source to give) but that no such
    event is known; a dead-lettered event is found by its id alone."""
    done = cli(redis_url, "events", "show", "nope")
    assert done.returncode == 2
    assert "no event 'nope' is known" in done.stderr
    assert "--source" not in done.stderr
    client = redis.Redis.from_url(redis_url)
    (key,) = make_dead_letters(client, 1)
    event_id = json.loads(client.hget("saw:dead", key) or b"{}")["event"]["id"]
    client.delete("saw:outcomes")  # the stream trimmed: the dead letter still tells
    shown = cli_json(redis_url, "events", "show", event_id)
    assert (shown["key"], shown["attempts"]) == (key, 2)
    client.close()


def test_a_replay_during_an_outage_is_not_reported_fixed(
    redis_url: str,
    redis_client: redis.Redis,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
) -> None:
    """Every grant answers 503 while three dead letters are replayed with `--wait`: none is
    reported applied, each is either dead-lettered again or still pending, and `--wait` exits
    1 (the issue's run said "5 of 5 replayed", then "finished 5/5, 100%")."""
    clients = ["out-1", "out-2", "out-3"]
    with pipeline_with(redis_url, sandbox_server, retry_max_attempts=2) as rt:
        onboard = [f.onboarded(c) for c in clients]
        rt.publisher.publish_many(onboard)
        wait_for_outcomes(redis_client, [e["id"] for e in onboard])
        sandbox.set_faults({"operations": {"add_credits": {"error_rate": 1.0}}})
        invoices = [f.invoice_paid(c, f"INV-{c}", 9) for c in clients]
        rt.publisher.publish_many(invoices)
        wait_for_outcomes(redis_client, [e["id"] for e in invoices])
        args = ("dead-letters", "replay", "--all", "--yes", "--wait", "--wait-timeout", "8")
        result = cli_json(redis_url, *args, code=1)
        sandbox.set_faults({})
    outcomes = result["outcomes"]
    assert result["replayed"] == 3
    assert outcomes["applied"] == 0
    assert outcomes["dead_lettered_again"] + outcomes["pending"] == 3
    assert result["state"] != "finished" or outcomes["dead_lettered_again"] == 3
