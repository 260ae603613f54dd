"""Changes to a live client: `client.updated` (email, credit type) and `plan.changed`.

Each field carries the event time (and tie-break) of its last applied change, so a late event
changes only the fields no later event in the total order (`handlers.order`) has set: any
arrival order converges to the in-order result.
"""

from __future__ import annotations

from typing import Any

from handlers.events import ClientUpdated, PlanChanged
from handlers.outcomes import Outcome
from handlers.plan import (
    Apply,
    ClientState,
    Decision,
    SetRecurringCredits,
    Skip,
    Step,
    Update,
)
from handlers.requests import SetRecurring, UpdateSubaccount
from handlers.rules import Context, gate, known_username, newer, stamped


def on_updated(event: ClientUpdated, state: ClientState, ctx: Context) -> Decision:
    """Update the subaccount's email and/or credit type, field by field if newer."""
    if blocked := gate(state):
        return blocked
    changes = _newer_fields(
        state, event, {"email": event.data.email, "credit_type": event.data.credit_type}
    )
    if not changes:
        return Skip(
            outcome=Outcome.SUPERSEDED,
            reason="every field was set by a later event (time, then type, then id)",
        )
    request = UpdateSubaccount(username=known_username(state), **changes)
    return Apply(steps=(Update(request=request),), state=_with_times(state, event, changes))


def on_plan_changed(event: PlanChanged, state: ClientState, ctx: Context) -> Decision:
    """Set the plan's credit type and recurring credits, each only if newer."""
    if blocked := gate(state):
        return blocked
    username = known_username(state)
    changes = _newer_fields(
        state, event, {"credit_type": event.data.credit_type, "recurring": event.data.recurring}
    )
    if not changes:
        return Skip(
            outcome=Outcome.SUPERSEDED,
            reason="every field was set by a later event (time, then type, then id)",
        )
    steps: list[Step] = []
    if "credit_type" in changes:
        update = UpdateSubaccount(username=username, credit_type=changes["credit_type"])
        steps.append(Update(request=update))
    if "recurring" in changes:
        recurring = SetRecurring(username=username, recurring=changes["recurring"])
        steps.append(SetRecurringCredits(request=recurring))
    return Apply(steps=tuple(steps), state=_with_times(state, event, changes))


def _newer_fields(
    state: ClientState, event: ClientUpdated | PlanChanged, fields: dict[str, Any]
) -> dict[str, Any]:
    """The given (non-null) fields whose last change comes before this event."""
    return {
        name: value
        for name, value in fields.items()
        if value is not None and newer(event, state, name)
    }


def _with_times(
    state: ClientState, event: ClientUpdated | PlanChanged, changes: dict[str, Any]
) -> ClientState:
    update = dict(changes)
    update.update(stamped(event, changes))
    return state.model_copy(update=update)
