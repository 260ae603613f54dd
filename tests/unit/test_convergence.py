"""Property: any duplication and permutation of a client's history converges to the in-order result.

The fold (`worker.dev.oracle`) models the worker around the pure handlers: the ledger (an event
key finishes once; a business key grants once), waiting for onboarding (re-queue at the back), and
a model subaccount that the plan's steps act on. Only the handlers' rules are under test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers import examples as f
from handlers import parse_event
from handlers.events import Event
from handlers.plan import Lifecycle
from worker.dev.oracle import fold

CLIENT = "client-1"


KINDS = ["paid", "paid_again", "suspend", "reactivate", "update", "plan", "churn"]
# Picks one of the options: hypothesis's draw here, a seeded random.choice end to end.
Choose = Callable[[list[Any]], Any]


def history(kinds: list[str], choose: Choose, client: str = CLIENT) -> list[Event]:
    """An onboarding at t=0, then one event per kind at distinct, increasing times."""
    events = [parse_event(f.onboarded(client, t=0, credits=10))]
    for i, kind in enumerate(kinds, start=1):
        events.append(parse_event(_raw(kind, float(i), choose, client)))
    return events


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """An onboarding at t=0 followed by 0-12 events at distinct, increasing times."""
    kinds = draw(st.lists(st.sampled_from(KINDS), max_size=12))
    return history(kinds, lambda options: draw(st.sampled_from(options)))


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
        return f.plan_changed(
            client, t=t, credit_type=credit, recurring={"amount": int(t), "period": "weekly"}
        )
    return f.churned(client, t=t)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), history=histories())
def test_any_order_with_duplicates_converges(data: st.DataObject, history: list[Event]) -> None:
    """Duplicated and shuffled deliveries reach the same subaccount as in-order delivery."""
    expected = fold(history).observable()
    duplicated = history + data.draw(st.lists(st.sampled_from(history), max_size=6))
    shuffled = data.draw(st.permutations(duplicated))
    assert fold(list(shuffled)).observable() == expected


def test_out_of_order_toggle_example() -> None:
    """reactivated(t2) delivered before suspended(t1) leaves the subaccount enabled."""
    history = [
        parse_event(f.onboarded(CLIENT, t=0)),
        parse_event(f.suspended(CLIENT, t=1)),
        parse_event(f.reactivated(CLIENT, t=2)),
    ]
    world = fold([history[0], history[2], history[1]])
    assert world.account is not None
    assert world.account["disabled"] is False
    assert world.state.lifecycle == Lifecycle.ACTIVE
