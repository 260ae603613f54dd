"""The closed sets a decision ends in: how an event finished, and why one was dead-lettered.

Both are enums from the handler's decision to the Redis record, so a typo is a type error.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """How an event finished; one per event in the outcome stream."""

    APPLIED = "applied"  # its steps ran (or had run) and its state was recorded
    DUPLICATE = "duplicate"  # the same event, or the same business effect, was already applied
    SUPERSEDED = "superseded"  # a newer event already set everything it would set
    IGNORED = "ignored"  # nothing to do (e.g. the client is churned)
    DEAD_LETTERED = "dead_lettered"  # it cannot succeed: kept with its reason for an operator


class Reason(StrEnum):
    """Why an event was dead-lettered; operators filter by these codes."""

    INVALID_EVENT = "invalid_event"  # failed validation at consume time
    PERMANENT_ERROR = "permanent_error"  # the API refused it (400/401/403)
    NOT_FOUND = "not_found"  # the subaccount does not exist at the API
    CONFLICT = "conflict"  # the username is taken by another subaccount
    AMBIGUOUS_OUTCOME = "ambiguous_outcome"  # sent, no answer, evidence cannot decide
    RETRIES_EXHAUSTED = "retries_exhausted"  # transient errors past the attempt/age limits
    CLIENT_UNKNOWN = "client_unknown"  # never onboarded within the wait limit
    CLIENT_CHURNED = "client_churned"  # invoice paid for a deleted subaccount
    BUSINESS_KEY_CONFLICT = "business_key_conflict"  # one invoice (or onboarding), two amounts
    BUSINESS_KEY_HELD = "business_key_held"  # its invoice is held by an event left undecided
    POISON_MESSAGE = "poison_message"  # delivered again and again without reaching an outcome
    INTERNAL_ERROR = "internal_error"  # a bug of ours kept failing the event: see the logs
