"""The total order of one client's events: the one rule both the worker and the oracle use.

Events are ordered by `order_key`: their `time` first; at equal times (Stripe's `created` has
one-second resolution) by causal rank — `client.onboarded` first (a client exists before anything
else happens to it), then `client.updated`, `plan.changed` and `invoice.paid`, then
`client.reactivated`, then `client.suspended` (a suspension and a reactivation of the same
instant end suspended: fail closed), then `client.churned` last (nothing follows an end) —; then
by the sender's event `id`, then its `source` (plain string order), so a sender that knows the
order of its same-second events gives them ids that sort in that order (ULIDs, zero-padded
counters). A field changes only for an event later in this order than the one that last set it,
so every delivery order of the same events converges to the in-order result.
"""

from __future__ import annotations

import datetime as dt

from handlers.events import Event, EventType

# Causal rank at equal times (lower first).
RANK: dict[EventType, int] = {
    EventType.ONBOARDED: 0,
    EventType.UPDATED: 1,
    EventType.PLAN_CHANGED: 1,
    EventType.INVOICE_PAID: 1,
    EventType.REACTIVATED: 2,
    EventType.SUSPENDED: 3,
    EventType.CHURNED: 4,
}

# What orders two events of the same instant: (causal rank, event id, source).
Tie = tuple[int, str, str]
OrderKey = tuple[dt.datetime, int, str, str]


def tie_of(event: Event) -> Tie:
    """The tie-break of `event` among events of the same instant."""
    return (RANK[event.type], event.id, event.source)


def order_key(event: Event) -> OrderKey:
    """Sort key of the total order of a client's events (see the module docstring)."""
    return (event.time, *tie_of(event))


def later(event: Event, at: dt.datetime | None, tie: Tie | None) -> bool:
    """True when `event` comes after the event that last set a field (`at`, `tie`; None: never
    set). A field set before ties were recorded (`tie` None) counts as set first in its instant."""
    if at is None:
        return True
    if event.time != at:
        return event.time > at
    return tie is None or tie_of(event) > tuple(tie)
