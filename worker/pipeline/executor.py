"""Execute one delivery of one event: lock the client, decide, run the steps once, record.

The executor returns what should happen to the message (`Done` or `Requeue`); it never acks or
enqueues itself, which keeps it testable without a broker. Every path that returns `Done` has
first recorded the outcome in Redis; a Redis failure raises `BrokerUnavailable` so the message
is not acknowledged.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from handlers import Context, decide
from handlers.errors import InvalidEvent
from handlers.events import Event, parse_event
from handlers.limits import DEFAULT_LIMITS, EventLimits
from handlers.outcomes import Reason
from handlers.plan import AddCredits, Apply, ClientState, Reject, Skip, Step, Wait, step_name
from worker.errors import Ambiguous, ApiError, BrokerUnavailable, Transient
from worker.log import get_logger, redactor
from worker.pipeline.attempts import AttemptStore, Claim, Finish, Opened
from worker.pipeline.attempts import StepDone as PendingDone
from worker.pipeline.ledger import Ledger, StepRecord, StepState
from worker.pipeline.outcomes import DeadLetter
from worker.pipeline.retry import GiveUp, RetryPolicy, backoff_ms, classify_permanent, on_transient
from worker.pipeline.steps import Applied, StepRunner, Undecidable, journaled

log = get_logger(__name__)

# Told of every finished event (outcome, event type): how metrics see the engine without it
# importing them.
OutcomeObserver = Callable[[str, str], None]


def _observe_nothing(outcome: str, event_type: str) -> None:
    """The default observer."""


@dataclass(frozen=True)
class AttemptInfo:
    """What the message says about earlier attempts (carried in its options)."""

    attempt: int = 1
    published_ms: int = 0
    first_failure_ms: int | None = None


@dataclass(frozen=True)
class Done:
    outcome: str  # applied, duplicate, superseded, ignored, dead_lettered


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


class StepFailed(Exception):
    """A step could not complete in this attempt; carries the dead-letter reason or the retry."""

    def __init__(
        self,
        step: str,
        error: ApiError | None,
        reason: Reason,
        readings: dict[str, Any],
        business_key: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.step = step
        self.error = error
        self.reason = reason
        self.readings = readings
        self.business_key = business_key  # held by a step that was proven not applied
        self.detail = detail or (str(error) if error else "the outcome of the call is unknown")
        super().__init__(f"step {step} failed: {reason}")


class LeaseLost(Exception):
    """The client's lease expired while we worked; start over with fresh state."""


@dataclass
class _Attempt:
    event: Event
    raw: dict[str, Any]
    info: AttemptInfo
    token: str
    state: ClientState
    ledger: Ledger
    now_ms: int
    # The last finished step's record, written by the attempt's next Redis call (one round
    # trip fewer per step); `_flush` writes it on paths that make no such call.
    pending: PendingDone | None = None
    stepped: bool = False  # a step has run in this attempt (the lease needs renewing)
    did_steps: bool = False  # a step took effect in this attempt

    @property
    def partly_applied(self) -> bool:
        """Some step of this event took effect (in this attempt or an earlier one)."""
        earlier = any(record.state == StepState.DONE for record in self.ledger.steps.values())
        return self.did_steps or earlier

    def take_pending(self) -> PendingDone | None:
        pending, self.pending = self.pending, None
        return pending


class Executor:
    """Runs deliveries of events; one instance is shared by every thread of a worker process."""

    def __init__(
        self,
        store: AttemptStore,
        runner: StepRunner,
        ctx: Context,
        policy: RetryPolicy,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        observer: OutcomeObserver = _observe_nothing,
    ) -> None:
        self._store = store
        self._observe = observer
        self._runner = runner
        self._ctx = ctx
        self._policy = policy
        self._limits = limits
        self._clock = clock
        self._rng = rng or random.Random()

    def handle(
        self, raw: dict[str, Any], info: AttemptInfo, token: str | None = None
    ) -> Done | Requeue:
        """Process one delivery of `raw` (an event dict) and say what to do with the message.

        `token` names this delivery's lease; a delivery retried after a Redis outage passes the
        same token, so it takes back its own lease instead of waiting for it to expire.
        """
        structlog.contextvars.clear_contextvars()
        try:
            event = parse_event(raw, self._limits.events)
        except InvalidEvent as exc:
            return self._reject_invalid(raw, info, exc)
        structlog.contextvars.bind_contextvars(
            event_id=event.id, client_id=event.client_id, event_type=event.type.value
        )
        try:
            return self._handle(event, raw, info, token or self._store.new_token())
        except BrokerUnavailable:
            raise  # nothing can be recorded: the actor waits for Redis, the message stays unacked
        except Exception as exc:
            return self._internal_error(event, raw, info, exc)
        finally:
            structlog.contextvars.clear_contextvars()

    def _handle(
        self, event: Event, raw: dict[str, Any], info: AttemptInfo, token: str
    ) -> Done | Requeue:
        opened = self._store.open(event.key, event.client_id, token)
        if opened.status == "finished":
            return self._duplicate(event, opened)
        if opened.status == "busy":
            log.debug("event.client_busy")
            return Requeue(self._limits.lock_busy_delay_ms, "client_busy", counts=False)
        state = opened.state or ClientState(client_id=event.client_id)
        ledger = opened.ledger or Ledger(steps={})
        attempt = _Attempt(event, raw, info, token, state, ledger, self._now_ms())
        try:
            if opened.deliveries > self._limits.max_deliveries:
                detail = f"{opened.deliveries - 1} deliveries ended without an outcome"
                return self._dead_letter(attempt, Reason.POISON_MESSAGE, detail)
            return self._decide_and_run(attempt)
        except BaseException:
            self._release_quietly(attempt)
            raise

    def _decide_and_run(self, a: _Attempt) -> Done | Requeue:
        decision = decide(a.event, a.state, self._ctx)
        if isinstance(decision, Skip):
            return self._finish(a, decision.outcome, None, reason=decision.reason)
        if isinstance(decision, Reject):
            return self._dead_letter(a, decision.reason, decision.detail)
        if isinstance(decision, Wait):
            return self._wait(a)
        return self._apply(a, decision)

    def _apply(self, a: _Attempt, plan: Apply) -> Done | Requeue:
        statuses: dict[str, str] = {}
        try:
            for step in plan.steps:
                statuses[step_name(step)] = self._run_step(a, step)
        except StepFailed as failed:
            return self._step_failed(a, failed)
        except LeaseLost:
            log.warning("event.lease_lost")
            self._flush(a)
            return Requeue(self._limits.lock_busy_delay_ms, "lease_lost", counts=False)
        duplicate = bool(statuses) and all(s == "duplicate" for s in statuses.values())
        outcome = "duplicate" if duplicate else "applied"
        return self._finish(a, outcome, plan.state, steps=statuses)

    # --- one step ---------------------------------------------------------------------------

    def _run_step(self, a: _Attempt, step: Step) -> str:
        """Run `step` unless the ledger has it; return 'done', 'skipped' or 'duplicate'."""
        name = step_name(step)
        if a.ledger.is_done(name):
            record = a.ledger.steps[name]
            log.info("step.skipped", step=name, why="done by an earlier attempt")
            return "duplicate" if "duplicate_of" in record.result else "skipped"
        unfinished = a.ledger.unfinished(name)
        if unfinished is not None and self._resolve(a, step, unfinished.evidence):
            return "done"
        evidence = self._call(step, name, lambda: self._runner.evidence(step))
        if journaled(step):
            owner = self._begin(a, step, name, evidence)
            if owner.conflict:
                raise _conflict(step, name, owner)
            if owner.event_key != a.event.key:
                log.info("step.duplicate", step=name, duplicate_of=owner.event_key)
                return "duplicate"
        elif a.stepped:  # the lease was taken fresh at open; renew it before later steps
            self._renew(a)
        a.stepped = True
        try:
            result = self._runner.run(step)
        except ApiError as exc:
            if _maybe_applied(step, exc):
                return self._unanswered(a, step, name, evidence, exc)
            # Refused or never sent: nothing happened. A permanent refusal also frees the
            # business key, so another report of the same invoice is not skipped as a duplicate.
            business = None if isinstance(exc, Transient) else getattr(step, "business_key", None)
            self._store.clear_step(a.event.key, name, business)
            raise StepFailed(
                name, exc, classify_permanent(exc), {}, getattr(step, "business_key", None)
            ) from None
        self._done(a, name, result)
        return "done"

    def _begin(self, a: _Attempt, step: AddCredits, name: str, evidence: dict[str, Any]) -> Claim:
        record = StepRecord(StepState.IN_PROGRESS, a.token, self._now_ms(), evidence)
        held, owner = self._store.begin_step(
            a.event.key,
            a.event.client_id,
            a.token,
            name,
            record,
            step.business_key,
            StepRecord(
                StepState.DONE, a.token, self._now_ms(), result={"duplicate_of": "__OWNER__"}
            ),
            a.take_pending(),
            step.request.amount,
        )
        if not held:
            raise LeaseLost()
        log.debug("step.started", step=name)
        return owner

    def _unanswered(
        self, a: _Attempt, step: Step, name: str, evidence: dict[str, Any], exc: ApiError
    ) -> str:
        """A call that may have been applied: judge it by evidence, never send it blindly."""
        log.warning("step.ambiguous", step=name, error=str(exc))
        if self._resolve(a, step, evidence):
            return "done"
        self._store.clear_step(a.event.key, name)  # proven not applied: send again later
        retry = Transient(f"{exc}; proven not applied", operation=exc.operation)
        raise StepFailed(name, retry, Reason.RETRIES_EXHAUSTED, {}) from None

    def _renew(self, a: _Attempt) -> None:
        if not self._store.renew(a.event.key, a.event.client_id, a.token, a.take_pending()):
            raise LeaseLost()

    def _resolve(self, a: _Attempt, step: Step, evidence: dict[str, Any]) -> bool:
        """Judge an unanswered step; True if it took effect. Raises StepFailed if undecidable."""
        name = step_name(step)
        resolution = self._call(step, name, lambda: self._runner.resolve(step, evidence))
        log.info("step.resolved", step=name, resolution=type(resolution).__name__)
        if isinstance(resolution, Applied):
            self._done(a, name, resolution.result)
            return True
        if isinstance(resolution, Undecidable):
            raise StepFailed(name, None, Reason.AMBIGUOUS_OUTCOME, resolution.readings)
        return False  # NotApplied

    def _call(self, step: Step, name: str, fn: Callable[[], Any]) -> Any:
        """Run a read (evidence, resolution); a failure there leaves the ledger as it was."""
        try:
            return fn()
        except ApiError as exc:
            raise StepFailed(name, exc, classify_permanent(exc), {}) from None

    def _done(self, a: _Attempt, name: str, result: dict[str, Any]) -> None:
        """Note a finished step; its record rides on the attempt's next Redis call."""
        self._flush(a)
        a.did_steps = True  # (set before the record is written: that write may still fail)
        a.pending = (name, StepRecord(StepState.DONE, a.token, self._now_ms(), result=result))
        log.info("step.done", step=name)

    def _flush(self, a: _Attempt) -> None:
        """Write a finished step's record now, on a path that makes no other Redis call."""
        pending = a.take_pending()
        if pending is not None:
            self._store.step_done(a.event.key, pending)

    # --- endings ----------------------------------------------------------------------------

    def _step_failed(self, a: _Attempt, failed: StepFailed) -> Done | Requeue:
        if isinstance(failed.error, Transient):
            age = self._now_ms() - (a.info.published_ms or a.now_ms)
            verdict = on_transient(
                self._policy, failed.error, attempt=a.info.attempt, age_ms=age, rng=self._rng
            )
            if isinstance(verdict, GiveUp):
                if failed.business_key:  # never applied: let another report of it through
                    self._store.clear_step(a.event.key, failed.step, failed.business_key)
                return self._dead_letter(a, verdict.reason, verdict.detail, step=failed.step)
            log.info(
                "event.retry", step=failed.step, delay_ms=verdict.delay_ms, error=verdict.reason
            )
            return self._retry_later(a, verdict.delay_ms, verdict.reason)
        return self._dead_letter(
            a, failed.reason, failed.detail, step=failed.step, readings=failed.readings
        )

    def _retry_later(self, a: _Attempt, delay_ms: int, reason: str) -> Requeue:
        """Re-queue after a failure. An event already partly applied keeps the client's lease
        through the delay: no other event of the client may act on the half-changed subaccount
        (or decide from state this event has not recorded yet) before this one finishes."""
        if a.partly_applied:
            if self._store.hold(
                a.event.key, a.event.client_id, a.token, a.take_pending(), delay_ms
            ):
                return Requeue(delay_ms, reason, counts=True, lease_token=a.token)
        else:
            self._flush(a)
            self._store.release(a.event.key, a.event.client_id, a.token)
        return Requeue(delay_ms, reason, counts=True)

    def _wait(self, a: _Attempt) -> Done | Requeue:
        waited = self._now_ms() - (a.info.published_ms or a.now_ms)
        if waited > self._limits.unknown_client_wait_ms:
            detail = f"client {a.event.client_id} not onboarded after {waited} ms"
            return self._dead_letter(a, Reason.CLIENT_UNKNOWN, detail)
        self._store.release(a.event.key, a.event.client_id, a.token)
        log.info("event.waiting", why="client_unknown")
        return Requeue(self._limits.unknown_client_retry_ms, "client_unknown", counts=False)

    def _dead_letter(
        self,
        a: _Attempt,
        reason: Reason,
        detail: str,
        *,
        step: str | None = None,
        readings: dict[str, Any] | None = None,
    ) -> Done | Requeue:
        now = self._now_ms()
        letter = DeadLetter(
            key=a.event.key,
            event=a.raw,
            reason=reason.value,
            detail=redactor.scrub(detail),
            attempts=a.info.attempt,
            first_failure_ms=a.info.first_failure_ms or now,
            last_failure_ms=now,
            step=step,
            readings=readings or {},
        )
        log.warning("event.dead_lettered", reason=reason.value, step=step, detail=letter.detail)
        return self._finish(a, "dead_lettered", None, reason=reason.value, dead=letter)

    def _finish(
        self,
        a: _Attempt,
        outcome: str,
        state: ClientState | None,
        *,
        reason: str | None = None,
        steps: dict[str, str] | None = None,
        dead: DeadLetter | None = None,
    ) -> Done | Requeue:
        record = self._outcome_record(a.event.key, a.raw, outcome, reason or "")
        record.update(steps=steps or {}, attempt=a.info.attempt)
        finish = Finish(record, state, dead.encode() if dead else None)
        done = a.take_pending()
        if not self._store.finish(
            a.event.key, a.event.client_id, a.token, finish, self._now_ms(), done
        ):
            log.warning("event.lease_lost", at="finish")
            return Requeue(self._limits.lock_busy_delay_ms, "lease_lost", counts=False)
        log.info("event.finished", outcome=outcome, reason=reason, steps=steps)
        self._observe(outcome, a.event.type.value)
        return Done(outcome)

    def _duplicate(self, event: Event, opened: Opened) -> Done:
        reason = f"already {opened.outcome or 'finished'}"
        self._store.record_duplicate(
            self._outcome_record(event.key, event.to_message(), "duplicate", reason)
        )
        log.info("event.duplicate", first_outcome=opened.outcome)
        self._observe("duplicate", event.type.value)
        return Done("duplicate")

    def _reject_invalid(self, raw: Any, info: AttemptInfo, exc: InvalidEvent) -> Done:
        """An event invalid at consume time (published around the validator): dead-letter it."""
        event = raw if isinstance(raw, dict) else {"raw": repr(raw)[:2000]}
        key = hashlib.sha256(json.dumps(event, sort_keys=True, default=str).encode()).hexdigest()
        return self._dead_letter_unlocked(key[:32], event, info, Reason.INVALID_EVENT, exc)

    def _internal_error(
        self, event: Event, raw: dict[str, Any], info: AttemptInfo, exc: Exception
    ) -> Done | Requeue:
        """A bug of ours: retry like a transient failure, then dead-letter `internal_error`."""
        log.error("event.internal_error", error=repr(exc), exc_info=exc)
        if info.attempt >= self._policy.max_attempts:
            return self._dead_letter_unlocked(event.key, raw, info, Reason.INTERNAL_ERROR, exc)
        delay = backoff_ms(self._policy, info.attempt, self._rng)
        return Requeue(delay, f"internal error: {type(exc).__name__}", counts=True)

    def _dead_letter_unlocked(
        self, key: str, event: dict[str, Any], info: AttemptInfo, reason: Reason, exc: Exception
    ) -> Done:
        """Dead-letter without holding the client's lease (no valid client, or a bug)."""
        now = self._now_ms()
        detail = redactor.scrub(str(exc))
        first = info.first_failure_ms or now
        letter = DeadLetter(key, event, reason.value, detail, info.attempt, first, now)
        outcome = self._outcome_record(key, event, "dead_lettered", reason.value)
        self._store.record_unlocked(key, outcome, letter.encode())
        log.warning("event.dead_lettered", reason=reason.value, detail=detail)
        self._observe("dead_lettered", str(event.get("type", "")))
        return Done("dead_lettered")

    def _outcome_record(
        self, key: str, event: dict[str, Any], outcome: str, reason: str
    ) -> dict[str, Any]:
        """The outcome stream's record of an event: one shape for every ending."""
        return {
            "key": key,
            "event_id": str(event.get("id", "")),
            "client_id": str(event.get("subject", "")),
            "event_type": str(event.get("type", "")),
            "outcome": outcome,
            "reason": reason,
            "at_ms": self._now_ms(),
        }

    def _release_quietly(self, a: _Attempt) -> None:
        try:
            self._flush(a)
            self._store.release(a.event.key, a.event.client_id, a.token)
        except Exception as exc:  # the lease expires by itself; the original error matters more
            log.warning("event.release_failed", error=str(exc))

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _conflict(step: AddCredits, name: str, owner: Claim) -> StepFailed:
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


def _maybe_applied(step: Step, exc: ApiError) -> bool:
    """Could this failed call have taken effect? Always when no answer came; and for a grant,
    also on a 5xx: a proxy's 502 or a server error after the commit may hide an applied grant,
    and the balance read before it can tell."""
    if isinstance(exc, Ambiguous):
        return True
    return journaled(step) and isinstance(exc, Transient) and (exc.status or 0) >= 500
