"""Equal event times, through the real pipeline: every delivery order ends as the total order
(`handlers.order`) says, judged by the sandbox's state over HTTP."""

from __future__ import annotations

from typing import Any

import redis

from handlers import examples as f
from handlers import username_for
from tests.pipeline_support import wait_for_outcomes
from worker.runtime import Runtime
from worker.sandbox import SandboxAdmin


def _deliver_one_by_one(
    runtime: Runtime, redis_client: redis.Redis, *events: dict[str, Any]
) -> list[str]:
    """Send each event after the previous one ended; return their outcomes."""
    outcomes = []
    for event in events:
        runtime.publisher.publish(event)
        outcomes.append(wait_for_outcomes(redis_client, [event["id"]])[event["id"]]["outcome"])
    return outcomes


def _account(sandbox: SandboxAdmin, client: str) -> dict[str, Any]:
    account: dict[str, Any] = sandbox.state()["subaccounts"][username_for(client)]
    return account


def test_suspend_and_reactivate_of_one_second_end_suspended_in_either_order(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """suspended@T and reactivated@T: delivered in either order, the subaccount ends disabled
    (at equal times a suspension comes after a reactivation)."""
    for client, first, second in [
        ("tie-sr", f.suspended, f.reactivated),
        ("tie-rs", f.reactivated, f.suspended),
    ]:
        _deliver_one_by_one(
            pipeline,
            redis_client,
            f.onboarded(client, t=0),
            first(client, t=5),
            second(client, t=5),
        )
    assert _account(sandbox, "tie-sr")["disabled"] is True
    assert _account(sandbox, "tie-rs")["disabled"] is True


def test_a_suspension_in_the_onboardings_second_is_applied(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """client.onboarded@T then client.suspended@T, in order: the account ends suspended (not
    `superseded` by the onboarding)."""
    outcomes = _deliver_one_by_one(
        pipeline, redis_client, f.onboarded("tie-os", t=5), f.suspended("tie-os", t=5)
    )
    assert outcomes == ["applied", "applied"]
    assert _account(sandbox, "tie-os")["disabled"] is True


def test_updates_of_one_second_end_with_the_later_id_in_either_order(
    pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """Two client.updated of the same second: the email of the one whose id sorts last wins,
    whichever arrives last."""
    for client, ids in [("tie-ab", ["a", "b"]), ("tie-ba", ["b", "a"])]:
        updates = [
            f.event("client.updated", client, {"email": f"{i}@example.com"}, t=5,
                    event_id=f"{client}-upd-{i}")
            for i in ids
        ]  # fmt: skip
        _deliver_one_by_one(pipeline, redis_client, f.onboarded(client, t=0), *updates)
    assert _account(sandbox, "tie-ab")["email"] == "b@example.com"
    assert _account(sandbox, "tie-ba")["email"] == "b@example.com"
