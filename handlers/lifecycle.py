"""Birth and death of a client: `client.onboarded` creates the subaccount, `churned` deletes it."""

from __future__ import annotations

from handlers.events import ClientChurned, ClientOnboarded
from handlers.outcomes import Outcome
from handlers.plan import (
    AddCredits,
    Apply,
    ClientState,
    Create,
    Decision,
    Delete,
    Lifecycle,
    SetRecurringCredits,
    SetStatus,
    Skip,
    Step,
)
from handlers.requests import ChangeCredits, CreateSubaccount, SetDisabled, SetRecurring
from handlers.rules import (
    RECONCILE_SOURCE,
    Context,
    gate,
    known_username,
    newer,
    stamped,
    username_for,
)


def on_onboarded(event: ClientOnboarded, state: ClientState, ctx: Context) -> Decision:
    """Create the subaccount, then grant the plan's initial and recurring credits."""
    if state.lifecycle == Lifecycle.CHURNED:
        return Skip(
            outcome=Outcome.IGNORED, reason="client churned: a tombstone is not re-onboarded"
        )
    if state.lifecycle != Lifecycle.UNKNOWN and event.source == RECONCILE_SOURCE:
        return _recreate(event, state, ctx)
    if state.lifecycle != Lifecycle.UNKNOWN:
        return Skip(outcome=Outcome.IGNORED, reason=f"client already onboarded as {state.username}")
    data = event.data
    username = data.username or username_for(event.client_id)
    steps: list[Step] = [
        Create(
            request=CreateSubaccount(
                username=username, email=data.email, credit_type=data.credit_type
            ),
            generate_password=ctx.needs_password,
        )
    ]
    if data.credits:
        steps.append(
            AddCredits(
                request=ChangeCredits(username=username, amount=data.credits),
                business_key=f"onboarding:{event.client_id}",
            )
        )
    if data.recurring:
        steps.append(
            SetRecurringCredits(request=SetRecurring(username=username, recurring=data.recurring))
        )
    new_state = state.model_copy(
        update={
            "lifecycle": Lifecycle.ACTIVE,
            "username": username,
            "email": data.email,
            "credit_type": data.credit_type,
            "recurring": data.recurring,
            **stamped(event, ["email", "credit_type", "status"]),
            **stamped(event, ["recurring"] if data.recurring else []),
        }
    )
    return Apply(steps=tuple(steps), state=new_state)


def _recreate(event: ClientOnboarded, state: ClientState, ctx: Context) -> Decision:
    """Reconcile re-creates a subaccount deleted behind our back: same username, no credits."""
    username = known_username(state)
    request = CreateSubaccount(
        username=username, email=event.data.email, credit_type=event.data.credit_type
    )
    steps: list[Step] = [Create(request=request, generate_password=ctx.needs_password)]
    if state.lifecycle == Lifecycle.SUSPENDED:
        steps.append(SetStatus(request=SetDisabled(username=username, disabled=True)))
    return Apply(steps=tuple(steps), state=state)


def on_churned(event: ClientChurned, state: ClientState, ctx: Context) -> Decision:
    """Delete the subaccount (its credits return to the master account); keep a tombstone.

    A churn from reconcile on a tombstone re-asserts the deletion (the subaccount came back).
    """
    if (
        state.lifecycle == Lifecycle.CHURNED
        and event.source == RECONCILE_SOURCE
        and newer(event, state, "churned")
    ):
        new_state = state.model_copy(update=stamped(event, ["churned"]))
        return Apply(steps=(Delete(username=known_username(state)),), state=new_state)
    if blocked := gate(state):
        return blocked
    new_state = state.model_copy(
        update={"lifecycle": Lifecycle.CHURNED, **stamped(event, ["churned"])}
    )
    return Apply(steps=(Delete(username=known_username(state)),), state=new_state)
