"""The API circuit breaker's decisions, pure: what counts as systemic, when to open, who waits.

An API outage is not the event's fault, so it must not spend the event's attempts. A failure is
*systemic* when the API itself is failing: a connect error, a timeout, a 5xx or a 429
(`Transient`, or an unanswered `Ambiguous` call). Such failures of one operation, counted in
Redis across every worker, open that operation's circuit when within the window there are at
least `failure_threshold` of them from at least `min_clients` clients, while at least
`failure_ratio` of the reporting process's recent calls of it fail (so a 10 % error rate never
opens it, and one broken subaccount never does). While open, an event needing the operation
waits (re-queued, attempt not spent) until the next probe; one event per `probe_interval` is
let through as the probe (half-open); its answer closes the circuit. The store and the gate that
apply these are `circuit_store.py` and `circuit_gate.py`.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import assert_never

from handlers.plan import AddCredits, Create, Delete, SetRecurringCredits, SetStatus, Step, Update
from worker.errors import Ambiguous, ApiError, MalformedResponse, Transient


@dataclass(frozen=True)
class CircuitPolicy:
    """When a circuit opens and how often it is probed (settings `circuit_*`)."""

    failure_threshold: int = 10
    min_clients: int = 3
    failure_ratio: float = 0.5
    window_ms: int = 30_000
    probe_interval_ms: int = 5_000

    @property
    def recent_calls(self) -> int:
        """How many of a process's latest results of an operation its failure ratio is over."""
        return 2 * self.failure_threshold


@dataclass(frozen=True)
class OpenCircuit:
    """An open circuit as a worker last read it: since when the operation fails, and when its
    next probe is due on this process's monotonic clock (`probe_due`, seconds)."""

    operation: str
    since_ms: int
    probe_due: float


@dataclass(frozen=True)
class Go:
    """Run the plan; `probes` are the open circuits this attempt probes (its answer closes them)."""

    operations: tuple[str, ...] = ()
    probes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hold:
    """Wait `delay_ms` without spending an attempt: `operation`'s circuit is open."""

    delay_ms: int
    operation: str
    since_ms: int

    @property
    def detail(self) -> str:
        since = dt.datetime.fromtimestamp(self.since_ms / 1000, dt.UTC)
        return f"the API is unavailable for {self.operation} (circuit open since {since:%c} UTC)"


@dataclass(frozen=True)
class Probe:
    """Every open circuit the plan needs is due for a probe: try to take the probe slots."""

    operations: tuple[str, ...]
    due: tuple[str, ...]


Admission = Go | Hold | Probe


def is_systemic(error: ApiError | None) -> bool:
    """Does this failure say the API (not the event) is failing? Connect errors, timeouts, 5xx
    and 429 do; a refusal of the call as sent (4xx), or a 2xx we cannot read, does not."""
    if isinstance(error, Transient):
        return True
    return isinstance(error, Ambiguous) and not isinstance(error, MalformedResponse)


def operations_of(step: Step) -> tuple[str, ...]:
    """The API operations a step calls, in order (the client's operation names)."""
    match step:
        case AddCredits():
            change = "add_credits" if step.request.action == "increase" else "remove_credits"
            return ("get_credits", change)  # the balance is read first, as evidence
        case Create():
            return ("create",)
        case Update():
            return ("update",)
        case SetRecurringCredits():
            return ("set_recurring",)
        case SetStatus():
            return ("disable" if step.request.disabled else "enable",)
        case Delete():
            return ("delete",)
        case _:
            assert_never(step)


def operations_of_plan(steps: Iterable[Step]) -> tuple[str, ...]:
    """Every operation of a plan, in the order first called, each once."""
    ordered: dict[str, None] = {}
    for step in steps:
        ordered.update(dict.fromkeys(operations_of(step)))
    return tuple(ordered)


def admit(
    operations: tuple[str, ...], open_now: Mapping[str, OpenCircuit], now: float
) -> Admission:
    """Go when none of the plan's operations is open; hold until the latest probe when one is
    not yet due; else ask for the probe slots of those that are due."""
    blocked = [open_now[op] for op in operations if op in open_now]
    if not blocked:
        return Go(operations)
    waiting = [c for c in blocked if c.probe_due > now]
    if waiting:
        latest = max(waiting, key=lambda c: c.probe_due)
        return Hold(int((latest.probe_due - now) * 1000), latest.operation, latest.since_ms)
    return Probe(operations, tuple(c.operation for c in blocked))


def hold_delay_ms(until_probe_ms: int, policy: CircuitPolicy, rng: random.Random) -> int:
    """Wait past the next probe, spread over one probe interval: the waiting events come back
    at about the rate the interval allows, and all within two intervals of recovery."""
    spread = rng.uniform(0, policy.probe_interval_ms)
    return max(0, until_probe_ms) + int(spread) + 1


def answered(operations: tuple[str, ...], error: ApiError | None) -> tuple[str, ...]:
    """The operations a failed attempt proved the API answers: those called before the failing
    one, and the failing one too if its failure was the event's own (the API answered it). A
    failure without an API error (an undecidable outcome, a claimed invoice) proves nothing."""
    if error is None:
        return ()
    if error.operation not in operations:
        return ()
    before = operations[: operations.index(error.operation)]
    return before if is_systemic(error) else (*before, error.operation)


def opens(failures: int, clients: int, ratio: float, policy: CircuitPolicy) -> bool:
    """The opening rule (the store applies it to the counts it keeps in Redis)."""
    return (
        failures >= policy.failure_threshold
        and clients >= policy.min_clients
        and ratio >= policy.failure_ratio
    )


class RecentCalls:
    """One process's latest results per operation (ok or systemic failure), for the ratio.

    Count-based, as resilience4j's sliding window: an outage shows in the ratio after about
    `failure_threshold` failures, however busy the minutes before it were."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._results: dict[str, deque[bool]] = {}
        self._lock = threading.Lock()

    def note(self, operation: str, failed: bool) -> None:
        with self._lock:
            results = self._results.setdefault(operation, deque(maxlen=self._size))
            results.append(failed)

    def failure_ratio(self, operation: str) -> float:
        """Share of failures among the latest results (1.0 with nothing else known)."""
        with self._lock:
            results = self._results.get(operation)
            if not results:
                return 1.0
            return sum(results) / len(results)
