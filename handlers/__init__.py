"""Pure decisions: a validated event and what is known of its client in, a plan out.

No I/O, no clock, no randomness: the same inputs always give the same decision, which is what
lets the worker re-run a decision after a crash and find its ledger records still matching.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from handlers.credits import on_invoice_paid
from handlers.events import Event, EventType, parse_event
from handlers.lifecycle import on_churned, on_onboarded
from handlers.plan import ClientState, Decision
from handlers.profile import on_plan_changed, on_updated
from handlers.rules import Context, username_for
from handlers.status import on_status

_HANDLERS: dict[EventType, Callable[[Any, ClientState, Context], Decision]] = {
    EventType.ONBOARDED: on_onboarded,
    EventType.UPDATED: on_updated,
    EventType.INVOICE_PAID: on_invoice_paid,
    EventType.PLAN_CHANGED: on_plan_changed,
    EventType.SUSPENDED: on_status,
    EventType.REACTIVATED: on_status,
    EventType.CHURNED: on_churned,
}


def decide(event: Event, state: ClientState, ctx: Context) -> Decision:
    """The decision for `event` given the client's known `state`."""
    return _HANDLERS[event.type](event, state, ctx)


__all__ = ["ClientState", "Context", "Decision", "Event", "decide", "parse_event", "username_for"]
