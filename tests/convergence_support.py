"""Random histories of one client's events, shared by the unit property test and the end-to-end
convergence run: an onboarding, then events of the drawn kinds at few distinct times (equal and
out-of-order times are common, as with Stripe's whole-second `created`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from handlers import examples as f
from handlers import parse_event
from handlers.events import Event
from handlers.order import order_key

CLIENT = "client-1"


KINDS = ["paid", "paid_again", "suspend", "reactivate", "update", "plan", "churn"]
# Picks one of the options: hypothesis's draw here, a seeded random.choice end to end.
Choose = Callable[[list[Any]], Any]


# Few distinct times, so equal times are common (Stripe's `created` is whole seconds) and an
# event may be as old as its client's onboarding, or older.
TIMES = [0.0, 1.0, 2.0, 3.0]


def history(kinds: list[str], choose: Choose, client: str = CLIENT) -> list[Event]:
    """An onboarding, then one event per kind, each at a drawn time (equal and out of order
    times included); in the order drawn, which is not the total order."""
    events = [parse_event(f.onboarded(client, t=choose(TIMES[:2]), credits=10))]
    for kind in kinds:
        events.append(parse_event(_raw(kind, choose(TIMES), choose, client)))
    return events


def in_order(events: list[Event]) -> list[Event]:
    """The events in the total order of `handlers.order`: the reference delivery."""
    return sorted(events, key=order_key)


def _raw(kind: str, t: float, choose: Choose, client: str) -> dict[str, Any]:
    if kind in {"paid", "paid_again"}:
        invoice = choose(["INV-0", "INV-1", "INV-2", "INV-3"])  # few ids: some come twice
        return f.invoice_paid(client, f"{client}-{invoice}", 5, t=t)
    if kind == "suspend":
        return f.suspended(client, t=t)
    if kind == "reactivate":
        return f.reactivated(client, t=t)
    if kind == "update":
        return f.updated(client, t=t, email=choose(["a@example.com", "b@example.com"]))
    if kind == "plan":
        credit = choose(["unlimited", "one_time_credit"])
        amount = choose([1, 2, 3])
        return f.plan_changed(
            client, t=t, credit_type=credit, recurring={"amount": amount, "period": "weekly"}
        )
    return f.churned(client, t=t)
