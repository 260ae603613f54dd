"""What to do next for each dead-letter reason: one line an on-call engineer can act on, shown
by the console's overview and `dead-letters summary`. Every `Reason` has one (a test checks)."""

from __future__ import annotations

from handlers.outcomes import Reason

NEXT_STEP: dict[str, str] = {
    Reason.INVALID_EVENT: "The event itself is bad: fix the sender, send a corrected event, "
    "then purge these.",
    Reason.PERMANENT_ERROR: "The API refused the request (400/401/403): check the API key and "
    "the request in the detail; replay once fixed.",
    Reason.NOT_FOUND: "The subaccount is gone at the API: `credits reconcile` shows its last "
    "balance; re-create it (--fix --restore-credits), then replay.",
    Reason.CONFLICT: "The username is taken by another subaccount: rename or free it, then replay.",
    Reason.AMBIGUOUS_OUTCOME: "A grant may or may not have happened: check the subaccount's "
    "balance, then replay with --resolve applied or not_applied.",
    Reason.RETRIES_EXHAUSTED: "Transient failures outlasted the retries (an outage?): once the "
    "API is healthy, replay them (`dead-letters replay --reason retries_exhausted --wait`).",
    Reason.CLIENT_UNKNOWN: "Never onboarded in time: send the client's onboarding event, then "
    "replay.",
    Reason.CLIENT_CHURNED: "Paid after the client was deleted: refund or re-onboard the client; "
    "purge if nothing is owed.",
    Reason.BUSINESS_KEY_CONFLICT: "One invoice reported with two amounts: decide which is right, "
    "then replay with --resolve applied (keep the first) or purge.",
    Reason.BUSINESS_KEY_HELD: "Its invoice is held by an undecided event: resolve that one "
    "(ambiguous_outcome) first, then replay.",
    Reason.POISON_MESSAGE: "Delivered again and again without an outcome: read the worker logs "
    "for its event id before replaying.",
    Reason.INTERNAL_ERROR: "A bug of ours: read the logs for its event id, fix, deploy, replay.",
}


def next_step(reason: str) -> str:
    """The advice for `reason` (a reason this code does not know gets a generic one)."""
    return NEXT_STEP.get(reason, "Read the detail and the worker logs for its event id.")
