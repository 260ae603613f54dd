"""Operators' tools: list, filter, replay and purge dead letters, safely."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis

from handlers import examples as f
from handlers import username_for
from tests.pipeline_support import (
    outcomes,
    wait_for_outcomes,
)
from tests.servers import wait_until
from worker.ops.replay import ReplayError, replay
from worker.runtime import Runtime
from worker.sandbox import SandboxAdmin


def _replay(runtime: Runtime, key: str, **kwargs: object) -> None:
    replay(runtime.redis, runtime.publisher, runtime.dead_letters, "saw", key, **kwargs)  # type: ignore[arg-type]


def test_replay_resumes_after_the_steps_already_done(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """An onboarding that died at its grant is replayed: no second create, one grant."""
    sandbox.set_state({"master_balance": 0})
    onboard = f.onboarded("ivy", credits=100)
    pipeline.publisher.publish(onboard)
    wait_for_outcomes(redis_client, [onboard["id"]])
    (letter,) = pipeline.dead_letters.list(reason="permanent_error")
    assert letter.step == "add_credits"
    sandbox.set_state({"master_balance": 1000})
    _replay(pipeline, letter.key)
    wait_until(lambda: _outcomes_of(redis_client, onboard["id"]) == ["dead_lettered", "applied"],
               what="the replay's outcome")  # fmt: skip
    applied = [
        e["operation"] for e in sandbox.journal(username=username_for("ivy")) if e["applied"]
    ]
    assert applied == ["create", "add_credits"]
    assert pipeline.dead_letters.count() == 0
    assert pipeline.dead_letters.counts_by_reason() == {}


def test_ambiguous_dead_letter_replays_with_the_operators_verdict(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """Undecidable evidence dead-letters `ambiguous_outcome`; `resolve="applied"` then finishes
    the event without sending the grant again."""
    wait_for_outcomes(redis_client, [_publish(pipeline, f.onboarded("jon"))])
    user = username_for("jon")
    sandbox.set_faults(
        {"operations": {"add_credits": {"drop_next": 1}, "get_credits": {"latency_ms": 400}}}
    )
    paid = f.invoice_paid("jon", "INV-1", 30)
    pipeline.publisher.publish(paid)
    # While the worker reads the balance to judge the dropped grant, the balance moves:
    wait_until(lambda: sandbox.journal(operation="add_credits") != [], what="the dropped grant")
    sandbox.set_state({"subaccounts": {user: {"balance": 999}}})
    wait_for_outcomes(redis_client, [paid["id"]])
    (letter,) = pipeline.dead_letters.list(reason="ambiguous_outcome")
    assert letter.step == "add_credits"
    both = {key: letter.readings[key] for key in ("balance_before", "balance_after", "amount")}
    assert both == {"balance_before": 0, "balance_after": 999, "amount": 30}
    assert (letter.readings["used_before"], letter.readings["used_after"]) == (0, 0)
    _replay(pipeline, letter.key, resolve="applied")
    wait_until(lambda: _outcomes_of(redis_client, paid["id"]) == ["dead_lettered", "applied"],
               what="the replay's outcome")  # fmt: skip
    grants = [e for e in sandbox.journal(operation="add_credits") if e["applied"]]
    assert len(grants) == 1
    with pytest.raises(ReplayError, match="no dead letter"):
        _replay(pipeline, letter.key)


def test_a_business_key_conflict_replays_only_as_settled(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """Replayed as it is, the second report could grant its amount on top of the first once
    the first's claim is gone; the operator settles it by hand and says so."""
    wait_for_outcomes(redis_client, [_publish(pipeline, f.onboarded("kim"))])
    wait_for_outcomes(redis_client, [_publish(pipeline, f.invoice_paid("kim", "INV-2", 40))])
    other = {**f.invoice_paid("kim", "INV-2", 55), "source": "urn:stripe"}
    wait_for_outcomes(redis_client, [_publish(pipeline, other)])
    (letter,) = pipeline.dead_letters.list(reason="business_key_conflict")
    # 30 days later the claim and the ledgers have expired; the dead letter is kept
    for name in redis_client.scan_iter("saw:business*"):
        redis_client.delete(name)
    for name in redis_client.scan_iter("saw:ledger:*"):
        redis_client.delete(name)
    for resolve in (None, "not_applied"):
        with pytest.raises(ReplayError, match="settle the difference by hand"):
            _replay(pipeline, letter.key, resolve=resolve)
    _replay(pipeline, letter.key, resolve="applied")
    wait_until(lambda: _outcomes_of(redis_client, other["id"]) == ["dead_lettered", "applied"],
               what="the settled replay's outcome")  # fmt: skip
    grants = [e["amount"] for e in sandbox.journal(operation="add_credits") if e["applied"]]
    assert grants == [40]


def test_cli_lists_filters_and_purges(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis, redis_url: str
) -> None:
    """`dead-letters list --reason --json` prints the pinned array; `purge ID --yes` removes one
    for good, and says so in `--json`."""
    sandbox.set_state({"master_balance": 0})
    wait_for_outcomes(redis_client, [_publish(pipeline, f.onboarded("kay", credits=5))])
    env = {**os.environ, "SUBACCOUNT_WORKER_REDIS_URL": redis_url}
    (row,) = json.loads(_cli(env, "dead-letters", "list", "--reason", "permanent_error", "--json"))
    assert row["subject"] == "kay"
    assert row["step"] == "add_credits"
    assert (
        json.loads(_cli(env, "dead-letters", "list", "--reason", "client_unknown", "--json")) == []
    )
    purged = json.loads(_cli(env, "dead-letters", "purge", row["id"], "--yes", "--json"))
    assert (purged["planned"], purged["purged"], purged["skipped"]) == (1, 1, [])
    assert pipeline.dead_letters.count() == 0


def _outcomes_of(client: redis.Redis, event_id: str) -> list[str]:
    return [o["outcome"] for o in outcomes(client) if o.get("event_id") == event_id]


def _publish(runtime: Runtime, event: dict[str, object]) -> str:
    runtime.publisher.publish(event)
    return str(event["id"])


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()
