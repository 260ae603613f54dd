"""The convergence property end to end: shuffled, duplicated histories through Redis + sandbox."""

from __future__ import annotations

import random
from typing import Any

import pytest
import redis

from handlers import username_for
from tests.convergence_support import KINDS, history, in_order
from tests.pipeline_support import wait_for_outcomes
from worker.dev.oracle import fold
from worker.runtime import Runtime
from worker.sandbox import SandboxAdmin

pytestmark = pytest.mark.e2e


def _observed(account: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """What both the model and the sandbox say of a subaccount, in one shape."""
    if account is None:
        return None
    recurring = account["recurring"]
    if recurring is not None and not isinstance(recurring, dict):
        recurring = recurring.model_dump(mode="json")
    plan = (recurring["amount"], recurring["period"]) if recurring else None
    return (account["email"], str(account["credit_type"]), account["balance"],
            account["disabled"], plan)  # fmt: skip


@pytest.mark.parametrize("seed", [13, 16, 54])  # seeds with same-second conflicts
def test_shuffled_histories_reach_the_in_order_result(
    seed: int, pipeline: Runtime, sandbox: SandboxAdmin, redis_client: redis.Redis
) -> None:
    """Three clients' histories (equal and out-of-order event times included), duplicated and
    shuffled, published at once to 4 worker threads against an API failing one call in five,
    leave each subaccount as the fold of its history in the total order says."""
    rng = random.Random(seed)
    expected: dict[str, Any] = {}
    deliveries = []
    for i in range(3):
        client = f"conv-{seed}-{i}"
        events = history([rng.choice(KINDS) for _ in range(8)], rng.choice, client=client)
        expected[client] = _observed(fold(in_order(events)).account)
        deliveries += events + [rng.choice(events) for _ in range(3)]
    rng.shuffle(deliveries)
    # Transient failures anywhere in a plan, so events are also retried half applied.
    flaky = {"error_rate": 0.2, "error_status": 503}
    mutating = ["update", "add_credits", "set_recurring", "enable", "disable"]
    sandbox.set_faults({"seed": seed, "operations": dict.fromkeys(mutating, flaky)})
    pipeline.publisher.publish_many(deliveries)
    wait_for_outcomes(redis_client, {e.id for e in deliveries}, timeout_s=60)
    accounts = sandbox.state()["subaccounts"]
    for client, want in expected.items():
        assert _observed(accounts.get(username_for(client))) == want, client
