"""Property: any duplication and permutation of a client's history converges to the in-order result.

The fold (`worker.dev.oracle`) models the worker around the pure handlers: the ledger (an event
key finishes once; a business key grants once), waiting for onboarding (re-queue at the back), and
a model subaccount that the plan's steps act on. Only the handlers' rules are under test.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers import examples as f
from handlers import parse_event
from handlers.events import Event, EventType
from handlers.order import RANK
from handlers.plan import Lifecycle
from tests.convergence_support import CLIENT, KINDS, history, in_order
from worker.dev.oracle import fold


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """An onboarding followed by 0-12 events at drawn, often equal, times."""
    kinds = draw(st.lists(st.sampled_from(KINDS), max_size=12))
    return history(kinds, lambda options: draw(st.sampled_from(options)))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), history=histories())
def test_any_order_with_duplicates_converges(data: st.DataObject, history: list[Event]) -> None:
    """Duplicated and shuffled deliveries reach the same subaccount as in-order delivery."""
    expected = fold(in_order(history)).observable()
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


def _both_orders(first: dict[str, Any], second: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What a client ends as when `first` and `second` arrive in each order after onboarding."""
    onboarding = parse_event(f.onboarded(CLIENT, t=0))
    a, b = parse_event(first), parse_event(second)
    return [fold([onboarding, a, b]).observable(), fold([onboarding, b, a]).observable()]


def test_toggles_at_the_same_time_converge_suspended() -> None:
    """suspended@T and reactivated@T end the same, suspended, in either delivery order."""
    one, other = _both_orders(f.suspended(CLIENT, t=5), f.reactivated(CLIENT, t=5))
    assert one == other
    lifecycle, _username, account = one
    assert lifecycle == Lifecycle.SUSPENDED
    assert account["disabled"] is True


def test_updates_at_the_same_time_converge_on_the_later_id() -> None:
    """Two client.updated of the same second end with the email of the one whose id sorts last."""
    first = f.event("client.updated", CLIENT, {"email": "z@example.com"}, t=5, event_id="evt-a")
    second = f.event("client.updated", CLIENT, {"email": "a@example.com"}, t=5, event_id="evt-b")
    one, other = _both_orders(first, second)
    assert one == other
    assert one[2]["email"] == "a@example.com"


def test_a_suspension_in_the_onboardings_second_applies_after_it() -> None:
    """client.onboarded@T then client.suspended@T (in order, or not) leaves it suspended."""
    onboarding = parse_event(f.onboarded(CLIENT, t=5))
    suspension = parse_event(f.suspended(CLIENT, t=5))
    for delivery in ([onboarding, suspension], [suspension, onboarding]):
        world = fold(delivery)
        assert world.state.lifecycle == Lifecycle.SUSPENDED
        assert world.account is not None
        assert world.account["disabled"] is True


def test_the_total_order_ranks_every_event_type_and_breaks_ties_by_id() -> None:
    """Every catalogue type has a causal rank; same time and rank fall back to the event id."""
    assert set(RANK) == set(EventType)
    first = parse_event(f.event("client.updated", CLIENT, {"email": "a@example.com"}, t=1,
                                event_id="evt-1"))  # fmt: skip
    second = parse_event(f.event("client.updated", CLIENT, {"email": "b@example.com"}, t=1,
                                 event_id="evt-2"))  # fmt: skip
    onboarding = parse_event(f.onboarded(CLIENT, t=1))
    assert in_order([second, first, onboarding]) == [onboarding, first, second]
