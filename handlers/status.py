"""`client.suspended` / `client.reactivated`: disable or enable the subaccount, the latest wins
(in the total order of `handlers.order`: at equal times a suspension comes after a reactivation)."""

from __future__ import annotations

from handlers.events import ClientReactivated, ClientSuspended
from handlers.outcomes import Outcome
from handlers.plan import Apply, ClientState, Decision, Lifecycle, SetStatus, Skip
from handlers.requests import SetDisabled
from handlers.rules import Context, gate, known_username, newer, stamped


def on_status(
    event: ClientSuspended | ClientReactivated, state: ClientState, ctx: Context
) -> Decision:
    """Apply a toggle only if it comes after the last applied toggle of this client."""
    if blocked := gate(state):
        return blocked
    if not newer(event, state, "status"):
        return Skip(
            outcome=Outcome.SUPERSEDED,
            reason="a later suspend/reactivate (time, then type, then id) was applied",
        )
    disabled = isinstance(event, ClientSuspended)
    request = SetDisabled(username=known_username(state), disabled=disabled)
    new_state = state.model_copy(
        update={
            "lifecycle": Lifecycle.SUSPENDED if disabled else Lifecycle.ACTIVE,
            **stamped(event, ["status"]),
        }
    )
    return Apply(steps=(SetStatus(request=request),), state=new_state)
