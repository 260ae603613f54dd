"""Limits an event must respect beyond its types, set by the deployment and passed in explicitly.

Handlers stay pure: a limit is not read from the environment here but handed to `parse_event`,
which gives it to the models through pydantic's validation context (`CONTEXT_KEY`). Every door
(publish, `send`, the ingress) and the worker on consume pass the same settings-derived value,
so an event refused at the door is also refused if it reaches the queue another way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo

DEFAULT_MAX_CREDITS_PER_GRANT = 10_000_000
CONTEXT_KEY = "limits"


@dataclass(frozen=True)
class EventLimits:
    """`max_credits_per_grant`: the most credits one invoice, onboarding or recurring amount
    may carry; a typo of 1,000,000,000 is refused at the door, not dead-lettered by the API."""

    max_credits_per_grant: int = DEFAULT_MAX_CREDITS_PER_GRANT


DEFAULT_LIMITS = EventLimits()


def _within_grant_cap(value: int, info: ValidationInfo) -> int:
    """`value` if the validation context's limits allow it in one grant (no context, no cap)."""
    limits = (info.context or {}).get(CONTEXT_KEY)
    if isinstance(limits, EventLimits) and value > limits.max_credits_per_grant:
        raise ValueError(
            f"{value} is above the maximum of {limits.max_credits_per_grant} credits per grant"
        )
    return value


# A number of credits in one grant: capped when validated with limits in the context.
GrantCredits = Annotated[int, AfterValidator(_within_grant_cap)]
