"""The events of a chaos run, generated from a seed: what is sent, how, and what it must lead to.

Each client is onboarded at t=0, then gets events at increasing times (invoices, suspensions,
reactivations, updates, plan changes); a share of them take the previous event's second instead
(same-second events, as Stripe's whole-second `created` gives: toggles at equal times, a
suspension in the onboarding's second), which the total order of `handlers/order.py` decides.
Deliveries are the events in time order, shuffled within windows (out-of-order delivery), with
duplicates (the same event again later) and second reports (the same invoice under another event
id and source). A few clients are never onboarded (their
invoices must end `client_unknown`) and a few events are invalid (the ingress must refuse them).
Churns are sent in a last phase, after the rest is drained, so that which invoices meet a deleted
subaccount does not depend on the delivery order.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from handlers import examples as ex

KINDS = ["paid", "paid", "paid", "suspend", "reactivate", "update", "plan"]
SECOND_SOURCE = "urn:chaos:billing-export"


@dataclass(frozen=True)
class ScenarioSize:
    clients: int = 100
    events_per_client: int = 9  # including the onboarding
    window: int = 15  # deliveries shuffled within windows of this many
    duplicate_rate: float = 0.10
    second_report_rate: float = 0.10  # of invoices
    churn_rate: float = 0.10  # of clients
    ghosts: int = 2  # clients never onboarded, one invoice each
    invalid: int = 4  # events the ingress must refuse
    same_second_rate: float = 0.3  # events at the previous event's second


@dataclass
class Scenario:
    """The deliveries of each phase, every distinct valid event, and the refused ones."""

    main: list[dict[str, Any]] = field(default_factory=list)
    final: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # distinct, valid
    invalid: list[dict[str, Any]] = field(default_factory=list)


def build(size: ScenarioSize, seed: int) -> Scenario:
    """The scenario of `seed`: the same seed always gives the same deliveries."""
    rng = random.Random(seed)
    scenario = Scenario()
    timed: list[tuple[float, dict[str, Any]]] = []
    for i in range(size.clients):
        client = f"chaos-{seed}-{i:03d}"
        history = _history(client, size, rng)
        scenario.events += history
        timed += [(_t(e), e) for e in history]
        if rng.random() < size.churn_rate:
            churn = ex.churned(client, t=size.events_per_client + 1)
            churn["id"] = f"{client}-churn"
            scenario.events.append(churn)
            scenario.final.append(churn)
    for j in range(size.ghosts):
        ghost = ex.invoice_paid(f"chaos-{seed}-ghost-{j}", f"GHOST-{seed}-{j}", 10, t=1)
        ghost["id"] = f"chaos-{seed}-ghost-{j}-inv"
        scenario.events.append(ghost)
        timed.append((0.5, ghost))
    timed.sort(key=lambda pair: pair[0])
    ordered = [event for _, event in timed]
    scenario.main = _disorder(ordered, size, rng)
    scenario.invalid = [_invalid(k, seed) for k in range(size.invalid)]
    return scenario


def _history(client: str, size: ScenarioSize, rng: random.Random) -> list[dict[str, Any]]:
    events = [ex.onboarded(client, t=0, credits=rng.choice([25, 50, 100]))]
    for k in range(1, size.events_per_client):
        kind = rng.choice(KINDS)
        t = k - 1 if rng.random() < size.same_second_rate else k
        if kind == "paid":
            paid = ex.invoice_paid(client, f"{client}-INV-{k}", rng.randint(1, 500), t=t)
            events.append(paid)
            if rng.random() < size.second_report_rate:
                again = copy.deepcopy(paid)
                again["source"] = SECOND_SOURCE
                again["id"] = f"{client}-e{k}-export"
                again["time"] = ex.at(t + 0.5)
                events.append(again)
        elif kind == "suspend":
            events.append(ex.suspended(client, t=t))
        elif kind == "reactivate":
            events.append(ex.reactivated(client, t=t))
        elif kind == "update":
            events.append(ex.updated(client, t=t, email=f"{client}+{k}@example.com"))
        else:
            recurring = {"amount": rng.randint(1, 100), "period": "monthly"}
            events.append(ex.plan_changed(client, t=t, recurring=recurring))
    for n, event in enumerate(events):
        if event["source"] != SECOND_SOURCE:
            event["id"] = f"{client}-e{n}"
    return events


def _disorder(
    ordered: list[dict[str, Any]], size: ScenarioSize, rng: random.Random
) -> list[dict[str, Any]]:
    """Shuffle within windows, then insert duplicates later than their first delivery."""
    out: list[dict[str, Any]] = []
    for start in range(0, len(ordered), size.window):
        window = ordered[start : start + size.window]
        rng.shuffle(window)
        out += window
    for event in [e for e in out if rng.random() < size.duplicate_rate]:
        first = out.index(event)
        out.insert(rng.randint(first + 1, len(out)), event)
    return out


def _invalid(k: int, seed: int) -> dict[str, Any]:
    """An event of the catalogue with one field the validator must refuse."""
    client = f"chaos-{seed}-invalid-{k}"
    bad = [
        ex.invoice_paid(client, f"BAD-{k}", -5),
        ex.event("client.exploded", client, {}),
        ex.onboarded(client, email="not-an-email"),
        ex.invoice_paid(client, f"BAD-{k}", 10),
    ][k % 4]
    bad["id"] = f"{client}-bad"
    if k % 4 == 3:
        del bad["subject"]  # whose client? nobody's
    return bad


def _t(event: dict[str, Any]) -> float:
    """Seconds after the examples' epoch of an event's time."""
    parsed = dt.datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
    return (parsed - ex.T0).total_seconds()
