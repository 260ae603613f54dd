"""The executor's view of the API circuit breaker: may this plan call the API now, and was this
failure the API's (wait, attempt not spent) or the event's (retry as before)?

One `ApiCircuit` per worker process. It caches the open circuits for `CACHE_S`, so while every
circuit is closed an event costs no Redis call here; a process learns of a circuit another
opened within that time (and of its own failures at once). Decisions are in `circuit.py`, the
state in `circuit_store.py`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable

import redis

from handlers.plan import Step
from worker.errors import ApiError, Transient
from worker.log import get_logger, redactor
from worker.pipeline.circuit import (
    CircuitPolicy,
    Go,
    Hold,
    OpenCircuit,
    Probe,
    RecentCalls,
    admit,
    answered,
    hold_delay_ms,
    is_systemic,
    operations_of_plan,
)
from worker.pipeline.circuit_store import CircuitStore, Verdict
from worker.settings import Settings

log = get_logger(__name__)

CACHE_S = 0.5  # how stale a process's view of the open circuits may be
# Told of what the circuit does (operation, "opened" | "closed" | "probe" | "held"): metrics.
CircuitObserver = Callable[[str, str], None]


def _observe_nothing(operation: str, what: str) -> None:
    """The default observer."""


class NoCircuit:
    """The gate when the breaker is disabled (`circuit_enabled=false`): every plan goes, every
    failure is the event's, as without a breaker."""

    def admit(self, steps: Iterable[Step]) -> Go | Hold:
        return Go()

    def failed(self, admission: Go, error: ApiError | None, client_id: str) -> Hold | None:
        return None

    def succeeded(self, admission: Go) -> None:
        return None


class ApiCircuit(NoCircuit):
    """The shared breaker, applied to one worker process's events."""

    def __init__(
        self,
        store: CircuitStore,
        policy: CircuitPolicy,
        *,
        rng: random.Random | None = None,
        observer: CircuitObserver = _observe_nothing,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._policy = policy
        self._rng = rng or random.Random()
        self._observe = observer
        self._clock = clock
        self._recent = RecentCalls(policy.recent_calls)
        self._lock = threading.Lock()
        self._open: dict[str, OpenCircuit] = {}
        self._read_at = float("-inf")

    def admit(self, steps: Iterable[Step]) -> Go | Hold:
        """Go, go as the probe of the open circuits the plan needs, or hold until their probe."""
        operations = operations_of_plan(steps)
        open_now = self._open_now()
        if not open_now:
            return Go(operations)
        decision = admit(operations, open_now, self._clock())
        if isinstance(decision, Probe):
            return self._take_probes(decision)
        if isinstance(decision, Hold):
            return self._held(decision.operation, decision.delay_ms, decision.since_ms)
        return decision

    def failed(self, admission: Go, error: ApiError | None, client_id: str) -> Hold | None:
        """Learn from a failed attempt. A systemic failure counts towards opening; if the circuit
        of the failing operation is (now) open, the event holds: the failure was not its own."""
        self._settle(admission, answered(admission.operations, error))
        if error is None or not is_systemic(error):
            return None
        operation = error.operation
        self._recent.note(operation, failed=True)
        ratio = self._recent.failure_ratio(operation) >= self._policy.failure_ratio
        retry_after = error.retry_after if isinstance(error, Transient) else None
        detail = redactor.scrub(str(error))
        verdict = self._store.failed(operation, client_id, detail, ratio,
                                     int((retry_after or 0) * 1000))  # fmt: skip
        if not verdict.is_open:
            return None
        self._remember(operation, verdict)
        if verdict.opened:
            log.warning("api.circuit_opened", operation=operation, since_ms=verdict.since_ms,
                        error=detail)  # fmt: skip
            self._observe(operation, "opened")
        return self._held(operation, verdict.probe_at_ms - verdict.now_ms, verdict.since_ms)

    def succeeded(self, admission: Go) -> None:
        """Every call of the plan was answered: probes close their circuits."""
        self._settle(admission, admission.operations)

    # --- internals ----------------------------------------------------------------------------

    def _settle(self, admission: Go, proven: tuple[str, ...]) -> None:
        for operation in proven:
            self._recent.note(operation, failed=False)
        for operation in admission.probes:
            if operation in proven and self._store.close(operation):
                log.info("api.circuit_closed", operation=operation)
                self._observe(operation, "closed")
            if operation in proven:
                with self._lock:
                    self._open.pop(operation, None)

    def _take_probes(self, decision: Probe) -> Go | Hold:
        taken: list[str] = []
        for operation in decision.due:
            verdict = self._store.try_probe(operation)
            if not verdict.is_open:
                with self._lock:
                    self._open.pop(operation, None)
                continue
            self._remember(operation, verdict)
            if not verdict.probe:  # another worker probes it this interval
                return self._held(operation, verdict.probe_at_ms - verdict.now_ms,
                                  verdict.since_ms)  # fmt: skip
            taken.append(operation)
            log.info("api.circuit_probe", operation=operation)
            self._observe(operation, "probe")
        return Go(decision.operations, tuple(taken))

    def _held(self, operation: str, until_probe_ms: int, since_ms: int) -> Hold:
        self._observe(operation, "held")
        return Hold(hold_delay_ms(until_probe_ms, self._policy, self._rng), operation, since_ms)

    def _open_now(self) -> dict[str, OpenCircuit]:
        """The open circuits, read from Redis at most every `CACHE_S`."""
        now = self._clock()
        with self._lock:
            if now - self._read_at < CACHE_S:
                return dict(self._open)
        circuits = self._store.read_open()
        fresh = {
            c.operation: OpenCircuit(c.operation, c.since_ms,
                                     now + (c.probe_at_ms - circuits.now_ms) / 1000)
            for c in circuits.open
        }  # fmt: skip
        with self._lock:
            self._open, self._read_at = fresh, now
            return dict(fresh)

    def _remember(self, operation: str, verdict: Verdict) -> None:
        due = self._clock() + (verdict.probe_at_ms - verdict.now_ms) / 1000
        with self._lock:
            self._open[operation] = OpenCircuit(operation, verdict.since_ms, due)


def circuit_policy(settings: Settings) -> CircuitPolicy:
    """The breaker's policy from the `circuit_*` settings."""
    return CircuitPolicy(
        failure_threshold=settings.circuit_failure_threshold,
        min_clients=settings.circuit_min_clients,
        failure_ratio=settings.circuit_failure_ratio,
        window_ms=int(settings.circuit_window_s * 1000),
        probe_interval_ms=int(settings.circuit_probe_interval_s * 1000),
    )


def build_circuit(
    settings: Settings, client: redis.Redis, observer: CircuitObserver = _observe_nothing
) -> NoCircuit:
    """The process's breaker, or none when `circuit_enabled` is false."""
    if not settings.circuit_enabled:
        return NoCircuit()
    policy = circuit_policy(settings)
    return ApiCircuit(CircuitStore(client, settings.key_prefix, policy), policy, observer=observer)
