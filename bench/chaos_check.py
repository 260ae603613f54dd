"""The checks of a chaos run: what Redis and the sandbox hold, against the oracle's fold.

- state: each client's subaccount (exists, email, credit type, disabled, recurring, and the
  credits allocated to it: balance + used where the surface reports usage) is the in-order fold's;
- grants: per subaccount, the journal's applied grants are the fold's, each exactly once
  (`lost` = granted by the fold, not by the API; `doubled` = applied more often than once);
- outcomes: every event has one (redeliveries add `duplicate` records only), and dead letters
  are exactly those the fold expects (a client never onboarded, an invoice after a churn), with
  zero `ambiguous_outcome`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

from bench.chaos_scenario import Scenario
from handlers import parse_event, username_for
from worker import keys
from worker.dev.oracle import World, in_order


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.violations


def check(scenario: Scenario, client: redis.Redis, admin: Any, prefix: str) -> Verdict:
    events = [parse_event(raw) for raw in scenario.events]
    worlds = in_order(events)
    verdict = Verdict()
    state = admin.state()["subaccounts"]
    journal = [e for e in admin.journal(operation="add_credits") if e["applied"]]
    wrong = sum(
        _state_differs(cid, w, state.get(username_for(cid)), verdict) for cid, w in worlds.items()
    )
    lost, doubled = _grants(worlds, journal, verdict)
    ambiguous = _outcomes(events, worlds, client, prefix, verdict)
    verdict.figures.update(wrong=wrong, lost=lost, doubled=doubled, ambiguous=ambiguous)
    return verdict


def _observed(account: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """One shape for the model's and the sandbox's subaccount."""
    if account is None:
        return None
    recurring = account.get("recurring")
    if recurring is not None and not isinstance(recurring, dict):
        recurring = recurring.model_dump(mode="json")
    plan = (recurring["amount"], recurring["period"]) if recurring else None
    allocated = account["balance"] + (account.get("used") or 0)
    return (account["email"], str(account["credit_type"]), account["disabled"], plan, allocated)


def _state_differs(
    client_id: str, world: World, remote: dict[str, Any] | None, verdict: Verdict
) -> bool:
    want = _observed(world.account)  # None too for a client never onboarded
    got = _observed(remote)
    if want != got:
        verdict.violations.append(f"client {client_id}: expected {want}, the API has {got}")
        return True
    return False


def _grants(
    worlds: dict[str, World], journal: list[dict[str, Any]], verdict: Verdict
) -> tuple[int, int]:
    applied: Counter[tuple[str, int]] = Counter((e["username"], e["amount"]) for e in journal)
    expected: Counter[tuple[str, int]] = Counter()
    for client_id, world in worlds.items():
        for amount in world.granted.values():
            expected[(username_for(client_id), amount)] += 1
    lost = sum((expected - applied).values())
    doubled = sum((applied - expected).values())
    if lost:
        verdict.violations.append(f"{lost} grants lost: {dict(expected - applied)}")
    if doubled:
        verdict.violations.append(f"{doubled} grants doubled: {dict(applied - expected)}")
    return lost, doubled


def _outcomes(
    events: list[Any], worlds: dict[str, World], client: redis.Redis, prefix: str, verdict: Verdict
) -> int:
    records: dict[str, list[dict[str, str]]] = {}
    entries: Any = client.xrange(keys.outcomes(prefix))
    for _id, fields in entries:
        record = {_text(k): _text(v) for k, v in fields.items()}
        records.setdefault(record["key"], []).append(record)
    for event in events:
        found = records.get(event.key, [])
        firsts = [r for r in found if not r.get("reason", "").startswith("already ")]
        if len(firsts) != 1:
            verdict.violations.append(f"event {event.id}: {len(firsts)} outcomes ({found})")
        for record in firsts[:1]:
            verdict.outcomes[record["outcome"]] += 1
    dead = {_text(k): json.loads(v) for k, v in client.hgetall(keys.dead_letters(prefix)).items()}
    expected_dead = {key for w in worlds.values() for key in (*w.rejected, *w.waiting)}
    for key in sorted(set(dead) - expected_dead):
        letter = dead[key]
        verdict.violations.append(
            f"unexpected dead letter {key}: {letter['reason']}: {letter['detail']}"
        )
    for key in sorted(expected_dead - set(dead)):
        verdict.violations.append(f"expected a dead letter for event key {key}")
    return sum(1 for letter in dead.values() if letter["reason"] == "ambiguous_outcome")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
