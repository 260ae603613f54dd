"""What the executor is told and what it answers: the attempt's bookkeeping from the message,
the limits it works within, and what to do with the message (`Done` or `Requeue`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handlers.limits import DEFAULT_LIMITS, EventLimits
from handlers.outcomes import Outcome

# Told of every finished event (outcome, event type): how metrics see the engine without it
# importing them.
OutcomeObserver = Callable[[Outcome, str], None]


def observe_nothing(outcome: Outcome, event_type: str) -> None:
    """The default observer."""


# Told when a delivery ended the event (its outcome recorded): the event, its attempt's
# bookkeeping and the outcome, so metrics can time the event from its business time and from
# the door without the engine importing them.
FinishObserver = Callable[[dict[str, Any], "AttemptInfo", Outcome], None]


def finish_nothing(event: dict[str, Any], info: AttemptInfo, outcome: Outcome) -> None:
    """The default finish observer."""


@dataclass(frozen=True)
class AttemptInfo:
    """What the message says about earlier attempts (carried in its options)."""

    attempt: int = 1
    published_ms: int = 0
    first_failure_ms: int | None = None
    replay: int = 0  # how many times an operator replayed it (0: never)


@dataclass(frozen=True)
class Done:
    outcome: Outcome


@dataclass(frozen=True)
class Requeue:
    delay_ms: int
    reason: str
    counts: bool  # True: a failed attempt (counts against the limits); False: just waiting
    lease_token: str | None = None  # the client's lease, kept for the retry to take back


@dataclass(frozen=True)
class Limits:
    unknown_client_wait_ms: int
    unknown_client_retry_ms: int
    lock_busy_delay_ms: int
    max_deliveries: int
    events: EventLimits = DEFAULT_LIMITS  # the door's limits, applied again on consume
