"""The oracle: what a client's events must lead to, from the pure handlers alone.

`fold` delivers events in a given order to a model of the worker around the handlers: the ledger
(an event key finishes once; a business key grants once), waiting for onboarding (re-queue at the
back) and a model subaccount that the plan's steps act on. Delivered in the total order of
`handlers.order` (time, then causal rank, then event id), it is what the real system must
converge to whatever the delivery order, duplicates, kills and faults: the convergence property
test and `make chaos` both judge against it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, assert_never

from handlers import Context, decide
from handlers.events import Event
from handlers.order import order_key
from handlers.plan import (
    AddCredits,
    Apply,
    ClientState,
    Create,
    Delete,
    Reject,
    SetRecurringCredits,
    SetStatus,
    Step,
    Update,
    Wait,
)


@dataclass
class World:
    """One client as the oracle sees it: known state, model subaccount, what finished how."""

    state: ClientState
    account: dict[str, Any] | None = None
    finished: set[str] = field(default_factory=set)
    granted: dict[str, int] = field(default_factory=dict)  # business key -> amount
    rejected: dict[str, str] = field(default_factory=dict)  # event key -> dead-letter reason
    waiting: set[str] = field(default_factory=set)  # event keys never decided (client unknown)

    def run(self, step: Step) -> None:
        """Apply one step to the model subaccount, as the API would."""
        if isinstance(step, Create):
            req = step.request
            self.account = {"email": req.email, "credit_type": req.credit_type,
                            "balance": 0, "disabled": False, "recurring": None}  # fmt: skip
            return
        account = self.account
        assert account is not None, "a step ran before the subaccount existed"
        match step:
            case AddCredits():
                if step.business_key not in self.granted:
                    self.granted[step.business_key] = step.request.amount
                    account["balance"] += step.request.amount
            case Update():
                for name in ("email", "credit_type"):
                    if getattr(step.request, name) is not None:
                        account[name] = getattr(step.request, name)
            case SetRecurringCredits():
                account["recurring"] = step.request.recurring
            case SetStatus():
                account["disabled"] = step.request.disabled
            case Delete():
                self.account = None
            case _:
                assert_never(step)

    def observable(self) -> tuple[Any, ...]:
        return (self.state.lifecycle, self.state.username, self.account)


def fold(events: list[Event], ctx: Context | None = None) -> World:
    """Deliver `events` (of one client) in the given order; waiting ones go to the back."""
    ctx = ctx or Context(needs_password=False)
    world = World(state=ClientState(client_id=events[0].client_id))
    queue = deque(events)
    waits = 0
    while queue and waits <= len(queue):
        event = queue.popleft()
        if event.key in world.finished:
            continue
        decision = decide(event, world.state, ctx)
        if isinstance(decision, Wait):
            queue.append(event)
            waits += 1
            continue
        waits = 0
        world.finished.add(event.key)
        if isinstance(decision, Reject):
            world.rejected[event.key] = decision.reason.value
        if isinstance(decision, Apply):
            for step in decision.steps:
                world.run(step)
            world.state = decision.state
    world.waiting = {event.key for event in queue if event.key not in world.finished}
    return world


def in_order(events: list[Event], ctx: Context | None = None) -> dict[str, World]:
    """The in-order fold of each client's events, in the total order of `handlers.order`."""
    by_client: dict[str, list[Event]] = {}
    for event in sorted(events, key=order_key):
        by_client.setdefault(event.client_id, []).append(event)
    return {client: fold(history, ctx) for client, history in by_client.items()}
