"""How a step fails inside an attempt: the exceptions the executor turns into an ending.

`StepFailed` carries a dead-letter reason or a retryable error; `LeaseLost` starts the event
over; `HolderPending` waits for the event that holds this grant's business key. The builders
name, for an operator, who holds an invoice and what to do.
"""

from __future__ import annotations

from typing import Any

from handlers.outcomes import Reason
from handlers.plan import AddCredits, Step
from worker.errors import Ambiguous, ApiError, Transient
from worker.pipeline.attempts import Claim, ClaimStatus
from worker.pipeline.steps import journaled


class StepFailed(Exception):
    """A step could not complete in this attempt; carries the dead-letter reason or the retry."""

    def __init__(
        self,
        step: str,
        error: ApiError | None,
        reason: Reason,
        readings: dict[str, Any],
        detail: str | None = None,
    ) -> None:
        self.step = step
        self.error = error
        self.reason = reason
        self.readings = readings
        self.detail = detail or (str(error) if error else "the outcome of the call is unknown")
        super().__init__(f"step {step} failed: {reason}")


class LeaseLost(Exception):
    """The client's lease expired while we worked; start over with fresh state."""


class HolderPending(Exception):
    """Another event holds this grant's business key and is still being worked on (running, or
    waiting for a retry): wait for it to settle rather than skip this report as a duplicate."""

    def __init__(self, step: str, owner: Claim) -> None:
        self.step = step
        self.owner = owner
        super().__init__(f"step {step} waits for event {owner.event_key}")


def conflict(step: AddCredits, name: str, owner: Claim) -> StepFailed:
    """Another event claimed this grant's business key for another amount: the two reports of
    one invoice disagree and a human must decide."""
    readings = {
        "business_key": step.business_key,
        "claimed_by_event": owner.event_key,
        "claimed_amount": owner.amount,
        "this_amount": step.request.amount,
    }
    detail = (
        f"{step.business_key} is claimed for {owner.amount} credits by event {owner.event_key} "
        f"(see its outcome); this event says {step.request.amount}. Check the billing records, "
        "settle the difference by hand, then purge this dead letter or replay it with "
        "--resolve applied"
    )
    return StepFailed(name, None, Reason.BUSINESS_KEY_CONFLICT, readings, detail=detail)


def held(step: AddCredits, name: str, owner: Claim) -> StepFailed:
    """Another event holds this grant's business key with a grant nobody could decide, and has
    finished (dead-lettered): granting now could grant twice, skipping could grant never."""
    how = f"dead-lettered {owner.owner_reason}" if owner.owner_reason else "finished undecided"
    readings = {
        "business_key": step.business_key,
        "held_by_event": owner.event_key,
        "holder_dead_letter_reason": owner.owner_reason or None,
        "this_amount": step.request.amount,
    }
    detail = (
        f"{step.business_key} is held by event {owner.event_key}, {how} with its grant "
        f"undecided: settle {owner.event_key} first (dead-letters replay {owner.event_key} "
        "--resolve applied or not_applied), then replay this one"
    )
    return StepFailed(name, None, Reason.BUSINESS_KEY_HELD, readings, detail=detail)


def holder_never_settled(step: str, owner: Claim, waited_ms: int) -> StepFailed:
    """The event holding this grant's business key did not settle within the retry age limit."""
    detail = (
        f"business key held by event {owner.event_key}, still unfinished after {waited_ms} ms: "
        f"see its outcome or dead letter; once it has settled, replay this one"
    )
    readings = {"held_by_event": owner.event_key}
    return StepFailed(step, None, Reason.BUSINESS_KEY_HELD, readings, detail=detail)


def check_claim(step: AddCredits, name: str, owner: Claim) -> None:
    """Go on only with a claim that is ours: fail or wait on any other."""
    match owner.status:
        case ClaimStatus.CLAIMED:
            return
        case ClaimStatus.CONFLICT:
            raise conflict(step, name, owner)
        case ClaimStatus.HELD:
            raise held(step, name, owner)
        case ClaimStatus.PENDING:
            raise HolderPending(name, owner)
        case ClaimStatus.DUPLICATE:
            raise AssertionError("a duplicate is recorded, not checked")


def maybe_applied(step: Step, exc: ApiError) -> bool:
    """Could this failed call have taken effect? Always when no answer came, and on a proxy's
    502 (the server behind it may still be applying the call); for a grant also on any 5xx: a
    server error after the commit may hide an applied grant, and the balance read before it can
    tell. Such a call is in doubt until its window has passed (`worker.pipeline.in_doubt`)."""
    if isinstance(exc, Ambiguous):
        return True
    if not isinstance(exc, Transient):
        return False
    return exc.status == 502 or (journaled(step) and (exc.status or 0) >= 500)
