"""`invoice.paid`: add the invoice's credits, once per invoice id (commutative with the rest)."""

from __future__ import annotations

from handlers.events import InvoicePaid
from handlers.outcomes import Reason
from handlers.plan import AddCredits, Apply, ClientState, Decision, Lifecycle, Reject, Wait
from handlers.requests import ChangeCredits
from handlers.rules import Context, known_username


def on_invoice_paid(event: InvoicePaid, state: ClientState, ctx: Context) -> Decision:
    """Grant credits; an invoice paid for a churned client needs a human (dead letter)."""
    if state.lifecycle == Lifecycle.UNKNOWN:
        return Wait()
    if state.lifecycle == Lifecycle.CHURNED:
        return Reject(
            reason=Reason.CLIENT_CHURNED,
            detail=f"invoice {event.data.invoice_id} paid after the subaccount was deleted",
        )
    request = ChangeCredits(username=known_username(state), amount=event.data.credits)
    step = AddCredits(request=request, business_key=f"invoice:{event.data.invoice_id}")
    return Apply(steps=(step,), state=state)
