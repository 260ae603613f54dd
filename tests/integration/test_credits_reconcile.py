"""Reconcile end to end: drift injected by hand in the sandbox, reported, repaired by events."""

from __future__ import annotations

import json
from typing import Any

import redis
from typer.testing import CliRunner

from handlers import examples as f
from handlers import username_for
from tests.conftest import TEST_API_KEY
from tests.pipeline_support import wait_for_outcomes
from tests.servers import ThreadedUvicorn
from worker.api.client import SubaccountClient
from worker.cli import app
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


def _cli(env: dict[str, str], *args: str) -> Any:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
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

    refused = CliRunner().invoke(app, ["reconcile", "--fix"], env=env, input="n\n")

    assert refused.exit_code == 1
    assert "nothing enqueued" in refused.output
    assert redis_client.xlen("saw:ops:audit") == 0
    accepted = CliRunner().invoke(
        app, ["reconcile", "--fix", "--operator", "ana"], env=env, input="y\n"
    )
    assert accepted.exit_code == 0, accepted.output
    assert "enqueued 1 corrective events" in accepted.output
    [(_id, entry)] = redis_client.xrange("saw:ops:audit")
    assert entry[b"action"] == b"reconcile_fix"
    assert entry[b"operator"] == b"ana"
