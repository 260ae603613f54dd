"""Reconcile end to end: drift injected by hand in the sandbox, reported, repaired by events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import redis

from handlers import examples as f
from handlers import username_for
from tests.conftest import TEST_API_KEY
from tests.pipeline_support import wait_for_outcomes
from tests.servers import ThreadedUvicorn
from worker.api.client import SubaccountClient
from worker.credits.monitor import build_monitor
from worker.credits.notify import NotificationType, read_notifications
from worker.credits.reconcile import note_drift
from worker.runtime import Runtime
from worker.sandbox import SandboxAdmin
from worker.settings import load_settings

CLIENTS = ["dis", "ena", "gone", "ctype", "miss", "fine"]


def _env(redis_url: str, sandbox_server: ThreadedUvicorn) -> dict[str, str]:
    return {
        "SUBACCOUNT_WORKER_REDIS_URL": redis_url,
        "SUBACCOUNT_WORKER_API_BASE_URL": f"{sandbox_server.url}/v6",
        "SUBACCOUNT_WORKER_API_KEY": TEST_API_KEY,
    }


def _run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The real command line in its own process (the pipeline's log lines stay out of stdout)."""
    argv = [sys.executable, "-m", "worker.cli", *args]
    return subprocess.run(
        argv, env={**os.environ, **env}, input=stdin, capture_output=True, text=True, timeout=60
    )


def _cli(env: dict[str, str], *args: str) -> Any:
    result = _run(env, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _send(runtime: Runtime, redis_client: redis.Redis, *events: dict[str, Any]) -> None:
    runtime.publisher.publish_many(list(events))
    found = wait_for_outcomes(redis_client, [e["id"] for e in events])
    assert {r["outcome"] for r in found.values()} == {"applied"}


def _inject_drift(sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn) -> None:
    """Every kind of drift, by hand, through the sandbox's own APIs (admin and public)."""
    sandbox.set_state(
        {
            "subaccounts": {
                username_for("dis"): {"disabled": True},
                username_for("ena"): {"disabled": False},
                username_for("gone"): {"email": "back@example.com"},  # churned, yet back
                username_for("ctype"): {"credit_type": "unlimited"},
                "stranger-1": {"email": "s@example.com", "credit_type": "unlimited"},
            }
        }
    )
    settings = load_settings(api_base_url=f"{sandbox_server.url}/v6", api_key=TEST_API_KEY)
    with SubaccountClient.from_settings(settings) as api:
        api.delete(username_for("miss"))


def _kinds(items: list[dict[str, Any]]) -> dict[tuple[str, str | None], str]:
    return {(i["kind"], i["client_id"]): i["username"] for i in items}


def test_every_kind_of_drift_is_reported_and_fixed_through_the_pipeline(
    pipeline: Runtime,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
    redis_client: redis.Redis,
    redis_url: str,
) -> None:
    """Reported with the right kind; --fix --yes repairs the fixable ones (the journal shows the
    calls); a second reconcile finds nothing fixable; --recreate-missing re-creates the last."""
    _send(pipeline, redis_client, *(f.onboarded(c, t=0, credits=50) for c in CLIENTS))
    _send(pipeline, redis_client, f.suspended("ena", t=1), f.churned("gone", t=1))
    _inject_drift(sandbox, sandbox_server)
    env = _env(redis_url, sandbox_server)

    report = _cli(env, "reconcile", "--json")

    assert _kinds(report) == {
        ("churned_still_exists", "gone"): username_for("gone"),
        ("credit_type_mismatch", "ctype"): username_for("ctype"),
        ("missing", "miss"): username_for("miss"),
        ("unexpected_disabled", "dis"): username_for("dis"),
        ("unexpected_enabled", "ena"): username_for("ena"),
        ("unmanaged", None): "stranger-1",
    }
    since = sandbox.journal()[-1]["seq"]

    fixed = _cli(env, "reconcile", "--fix", "--yes", "--json")

    event_ids = [i["fix"]["event_id"] for i in fixed if i["fix"] and i["fix"]["event_id"]]
    assert len(event_ids) == 4  # missing (not asked) and unmanaged (never) are left alone
    outcomes = wait_for_outcomes(redis_client, event_ids)
    assert {r["outcome"] for r in outcomes.values()} == {"applied"}
    calls = {(e["operation"], e["username"]) for e in sandbox.journal(since_seq=since)}
    assert calls == {
        ("enable", username_for("dis")),
        ("disable", username_for("ena")),
        ("delete", username_for("gone")),
        ("update", username_for("ctype")),
    }
    again = _cli(env, "reconcile", "--json")
    assert [i for i in again if i["fixable"]] == []
    assert {i["kind"] for i in again} == {"missing", "unmanaged"}
    missing = next(i for i in again if i["kind"] == "missing")
    assert missing["recorded"]["lifecycle"] == "active"
    # explained by the client's timeline: what was last applied to it
    assert [e["event_type"] for e in missing["explanation"]] == ["client.onboarded"]

    recreated = _cli(env, "reconcile", "--fix", "--yes", "--recreate-missing", "--json")

    [event_id] = [i["fix"]["event_id"] for i in recreated if i["fix"] and i["fix"]["event_id"]]
    wait_for_outcomes(redis_client, [event_id])
    account = sandbox.state()["subaccounts"][username_for("miss")]
    assert account["balance"] == 0  # re-created; its credits are reported, never re-granted
    assert {i["kind"] for i in _cli(env, "reconcile", "--json")} == {"unmanaged"}


def test_the_fix_is_audited_and_needs_confirmation(
    pipeline: Runtime,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
    redis_client: redis.Redis,
    redis_url: str,
) -> None:
    """Without --yes a refusal enqueues nothing; a confirmed fix leaves an audit entry."""
    _send(pipeline, redis_client, f.onboarded("dis", t=0))
    sandbox.set_state({"subaccounts": {username_for("dis"): {"disabled": True}}})
    env = _env(redis_url, sandbox_server)

    refused = _run(env, "reconcile", "--fix", stdin="n\n")

    assert refused.returncode == 1
    assert "nothing enqueued" in refused.stderr
    assert redis_client.xlen("saw:ops:audit") == 0
    accepted = _run(env, "reconcile", "--fix", "--operator", "ana", stdin="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert "enqueued 1 corrective events" in accepted.stdout
    [(_id, entry)] = redis_client.xrange("saw:ops:audit")
    assert entry[b"action"] == b"reconcile_fix"
    assert entry[b"operator"] == b"ana"


def test_an_invoice_granted_to_a_subaccount_disabled_by_hand_warns_and_records_drift(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """The grant goes through (the customer paid), but the outcome carries a warning and an
    `unexpected_disabled` drift record waits for the monitor to notify; a suspended client's
    grant is not drift."""
    _send(pipeline, redis_client, f.onboarded("acme", t=0), f.onboarded("paused", t=0))
    _send(pipeline, redis_client, f.suspended("paused", t=1))
    sandbox.set_state({"subaccounts": {username_for("acme"): {"disabled": True}}})
    paid = [f.invoice_paid("acme", "INV-7", 300, t=2), f.invoice_paid("paused", "INV-8", 5, t=2)]
    pipeline.publisher.publish_many(paid)

    found = wait_for_outcomes(redis_client, [e["id"] for e in paid])

    acme, paused = (found[e["id"]] for e in paid)
    assert acme["outcome"] == "applied"
    assert acme["warning"].startswith(
        f"subaccount_disabled: the API reports {username_for('acme')}"
    )
    assert "warning" not in paused
    [(key, raw)] = redis_client.hgetall("saw:credits:drift").items()
    assert key == f"unexpected_disabled:{username_for('acme')}".encode()
    assert json.loads(raw)["notified"] is False
    monitor = build_monitor(pipeline.settings, redis_client)
    for _ in range(2):  # the pipeline's record and two scans finding the same: one notification
        report = monitor.scanner.scan()
        note_drift(monitor.scanner.store, monitor.scanner.notifier, report.drift, time.time())
    notes = read_notifications(redis_client, "saw")
    drift = [n for n in notes if n.type == NotificationType.DRIFT_DETECTED]
    assert [(n.data["kind"], n.data["client_id"]) for n in drift] == [
        ("unexpected_disabled", "acme")
    ]


def test_a_lost_subaccounts_credits_are_shown_skipped_with_why_and_restored_once(
    pipeline: Runtime,
    sandbox: SandboxAdmin,
    sandbox_server: ThreadedUvicorn,
    redis_client: redis.Redis,
    redis_url: str,
) -> None:
    """A subaccount holding 7,558 credits is deleted at the API. Every view shows the 7,558;
    `--fix` without re-creation lists it as skipped and why, and the audit counts it;
    `--restore-credits` re-creates it and grants the 7,558 back through the pipeline, once:
    running it again grants nothing more."""
    _send(pipeline, redis_client, f.onboarded("lost", t=0, credits=50), f.onboarded("dis", t=0))
    sandbox.set_state({"subaccounts": {username_for("lost"): {"balance": 7558}}})
    monitor = build_monitor(pipeline.settings, redis_client)
    monitor.scanner.scan()  # the last known balance
    settings = load_settings(api_base_url=f"{sandbox_server.url}/v6", api_key=TEST_API_KEY)
    with SubaccountClient.from_settings(settings) as api:
        api.delete(username_for("lost"))
    sandbox.set_state({"subaccounts": {username_for("dis"): {"disabled": True}}})
    monitor.scanner.scan()  # sees it gone: forgets its latest snapshot
    env = _env(redis_url, sandbox_server)

    (lost,) = [i for i in _cli(env, "reconcile", "--json") if i["kind"] == "missing"]
    assert lost["last_balance"] == 7558
    table = _run(env, "reconcile")
    assert "7558" in table.stdout

    fixed = _run(env, "reconcile", "--fix", "--yes")
    assert fixed.returncode == 0, fixed.stderr
    assert f"skipped {username_for('lost')} (missing)" in fixed.stdout
    assert "last known balance 7558" in fixed.stdout
    entry = json.loads(_run(env, "audit", "list", "--json").stdout)[0]
    assert entry["result"]["not_fixable"] == 1
    assert entry["result"]["skipped"][0]["username"] == username_for("lost")

    restored = _cli(env, "reconcile", "--fix", "--yes", "--restore-credits", "--json")
    (item,) = [i for i in restored if i["kind"] == "missing"]
    assert item["restore"]["event_type"] == "invoice.paid"
    wait_for_outcomes(redis_client, [item["fix"]["event_id"], item["restore"]["event_id"]])
    account = sandbox.state()["subaccounts"][username_for("lost")]
    assert account["balance"] == 7558
    grants = [e for e in sandbox.journal(operation="add_credits") if e["applied"]]
    # the onboarding's 50, then the restore's 7,558
    assert [e["amount"] for e in grants if e["username"] == username_for("lost")] == [50, 7558]
    entry = json.loads(_run(env, "audit", "list", "--json").stdout)[0]
    assert entry["result"]["restored_credits"] == 7558
