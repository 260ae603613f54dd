"""The checks of a chaos run: what Redis and the sandbox hold, against the oracle's fold.

- state: each client's subaccount (exists, email, credit type, disabled, recurring, and the
  credits allocated to it: balance + used where the surface reports usage) is the in-order fold's;
- grants: per subaccount, the journal's applied grants are the fold's, each exactly once
  (`lost` = granted by the fold, not by the API; `doubled` = applied more often than once);
- outcomes: every event has one (redeliveries add `duplicate` records only), and dead letters
  are exactly those the fold expects (a client never onboarded, an invoice after a churn), with
  zero `ambiguous_outcome` for everything decidable.
- out of band: the sandbox's own top-ups (journaled `top_up`) are added to the fold's credits;
  a grant dead-lettered `ambiguous_outcome` whose readings a top-up of its subaccount (or its
  recurring credits of the same size) can explain is *undecidable*, rightly not guessed: it is
  counted apart and its client left to the operator (its state and its other dead letters, such
  as events that waited for an onboarding that never finished, are not judged).
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
    everything = admin.journal()
    journal = [e for e in everything if e["operation"] == "add_credits" and e["applied"]]
    topped: Counter[str] = Counter()
    for entry in everything:
        if entry["operation"] == "top_up" and entry["applied"]:
            topped[entry["username"]] += entry["amount"]
    dead = {_text(k): json.loads(v) for k, v in client.hgetall(keys.dead_letters(prefix)).items()}
    undecidable = _undecidable(dead, set(topped))
    left = {str(letter["event"]["subject"]) for letter in undecidable.values()}
    wrong = sum(
        _state_differs(cid, w, state.get(username_for(cid)), topped[username_for(cid)], verdict)
        for cid, w in worlds.items()
        if cid not in left
    )
    lost, doubled = _grants(
        {cid: w for cid, w in worlds.items() if cid not in left},
        [e for e in journal if e["username"] not in {username_for(c) for c in left}],
        verdict,
    )
    theirs = {k for k, d in dead.items() if str(d["event"].get("subject")) in left}
    ambiguous = _outcomes(events, worlds, dead, theirs, client, prefix, verdict)
    faults = Counter(str(e["fault"]) for e in everything if e["fault"])
    verdict.figures.update(
        wrong=wrong, lost=lost, doubled=doubled, ambiguous=ambiguous,
        undecidable=len(undecidable), clients_left_to_operator=len(left),
        top_ups=sum(1 for e in everything if e["operation"] == "top_up"),
        **{f"fault {kind}": n for kind, n in sorted(faults.items())},
    )  # fmt: skip
    return verdict


def _undecidable(dead: dict[str, Any], topped: set[str]) -> dict[str, Any]:
    """The `ambiguous_outcome` dead letters an out-of-band change explains: the operator's."""
    found: dict[str, Any] = {}
    for key, letter in dead.items():
        readings = letter.get("readings") or {}
        if letter["reason"] != "ambiguous_outcome":
            continue
        username = username_for(str(letter["event"]["subject"]))
        if username in topped or readings.get("recurring_amount") == readings.get("amount"):
            found[key] = letter
    return found


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
    client_id: str, world: World, remote: dict[str, Any] | None, topped: int, verdict: Verdict
) -> bool:
    want = _observed(world.account)  # None too for a client never onboarded
    if want is not None and topped:  # the sandbox's own top-ups of it
        want = (*want[:-1], want[-1] + topped)
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
    events: list[Any],
    worlds: dict[str, World],
    dead: dict[str, Any],
    left: set[str],  # dead letters of clients left to the operator (an undecidable grant)
    client: redis.Redis,
    prefix: str,
    verdict: Verdict,
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
    expected_dead = {key for w in worlds.values() for key in (*w.rejected, *w.waiting)}
    for key in sorted(set(dead) - expected_dead - left):
        letter = dead[key]
        verdict.violations.append(
            f"unexpected dead letter {key}: {letter['reason']}: {letter['detail']}"
        )
    for key in sorted(expected_dead - set(dead)):
        verdict.violations.append(f"expected a dead letter for event key {key}")
    return sum(
        1
        for key, letter in dead.items()
        if letter["reason"] == "ambiguous_outcome" and key not in left
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
