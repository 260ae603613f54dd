"""Execute one delivery of one event: lock the client, decide, run the steps once, record.

The executor returns what should happen to the message (`Done` or `Requeue`); it never acks or
enqueues itself, which keeps it testable without a broker. Every path that returns `Done` has
first recorded the outcome in Redis; a Redis failure raises `BrokerUnavailable` so the message
is not acknowledged.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, assert_never

import structlog

from handlers import Context, decide
from handlers.errors import InvalidEvent
from handlers.events import Event, parse_event
from handlers.outcomes import Outcome, Reason
from handlers.plan import (
    AddCredits,
    Apply,
    ClientState,
    Decision,
    Lifecycle,
    Reject,
    Skip,
    Step,
    Wait,
    step_name,
)
from worker import tracing
from worker.errors import ApiError, BrokerUnavailable, Transient
from worker.log import get_logger, redactor
from worker.pipeline.attempts import (
    AttemptStore,
    BeginStep,
    Claim,
    ClaimStatus,
    Finish,
)
from worker.pipeline.circuit import Go, Hold
from worker.pipeline.circuit_gate import NoCircuit
from worker.pipeline.failures import (
    HolderPending,
    LeaseLost,
    StepFailed,
    check_claim,
    holder_never_settled,
    maybe_applied,
)
from worker.pipeline.fence import Fence, FenceRules, NoToken
from worker.pipeline.grants import grant_of, settle_dangling
from worker.pipeline.in_doubt import Marks, WaitForWindow, Window, hold_for_window
from worker.pipeline.judging import Judging
from worker.pipeline.ledger import Ledger, StepRecord, StepState
from worker.pipeline.outcomes import DeadLetter, outcome_record
from worker.pipeline.progress import Attempt
from worker.pipeline.results import (
    AttemptInfo,
    Done,
    Limits,
    OutcomeObserver,
    Requeue,
    observe_nothing,
)
from worker.pipeline.retry import GiveUp, RetryPolicy, classify_permanent, on_transient
from worker.pipeline.steps import StepRunner, journaled
from worker.pipeline.unlocked import UnlockedEndings

log = get_logger(__name__)

__all__ = [
    "AttemptInfo",
    "Done",
    "DriftObserver",
    "Executor",
    "Limits",
    "OutcomeObserver",
    "Requeue",
]

# Told of drift the evidence shows (kind, client id, username): how reconcile learns of it.
DriftObserver = Callable[[str, str, str], None]


def _no_drift_observer(kind: str, client_id: str, username: str) -> None:
    """The default drift observer."""


class Executor(UnlockedEndings, Judging):
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
        observer: OutcomeObserver = observe_nothing,
        on_drift: DriftObserver = _no_drift_observer,
        circuit: NoCircuit | None = None,
        window: Window | None = None,
        fence: FenceRules | None = None,
        marks: Marks | None = None,
    ) -> None:
        self._circuit = circuit or NoCircuit()  # the API circuit breaker
        self._store = store
        self._observe = observer
        self._on_drift = on_drift
        self._runner = runner
        self._ctx = ctx
        self._policy = policy
        self._limits = limits
        self._clock = clock
        self._rng = rng or random.Random()
        self._window = window or Window(settle_ms=0, max_call_ms=0)
        self._fence = Fence(store, fence or FenceRules(lease_ms=0, need_ms=0, max_wait_ms=0))
        self._marks = marks or Marks(None, "")

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
        leased_at = self._fence.now()
        opened = self._store.open(event.key, event.client_id, token)
        if opened.status == "finished":
            return self._duplicate(event, opened, info)
        if opened.status == "busy":
            log.debug("event.client_busy")
            wait_ms = self._marks.wait_ms(event.client_id, self._now_ms())  # a call in doubt?
            return Requeue(wait_ms or self._limits.lock_busy_delay_ms, "client_busy", counts=False)
        state = opened.state or ClientState(client_id=event.client_id)
        ledger = opened.ledger or Ledger(steps={})
        attempt = Attempt(event, raw, info, token, state, ledger, self._now_ms())
        self._fence.leased(attempt, leased_at)
        try:
            if opened.dangling and state.username:  # other events' grants left mid-call
                until = settle_dangling(self._store, self._runner, event.client_id,
                                        state.username, opened.dangling, self._now_ms(),
                                        self._window)  # fmt: skip
                if until > self._now_ms():  # one is still in doubt: touch nothing till then
                    return self._later(attempt, until - self._now_ms(), "in_doubt", False)
            decision = decide(event, state, self._ctx)
            attempt.grant = grant_of(decision)
            if opened.deliveries > self._limits.max_deliveries:
                detail = f"{opened.deliveries - 1} deliveries ended without an outcome"
                return self._dead_letter(attempt, Reason.POISON_MESSAGE, detail)
            return self._run_decision(attempt, decision)
        except BaseException:
            self._release_quietly(attempt)
            raise

    def _run_decision(self, a: Attempt, decision: Decision) -> Done | Requeue:
        match decision:
            case Skip():
                return self._finish(a, Outcome(decision.outcome), None, reason=decision.reason)
            case Reject():
                return self._dead_letter(a, decision.reason, decision.detail)
            case Wait():
                return self._wait(a)
            case Apply():
                return self._apply(a, decision)
            case _:
                assert_never(decision)

    def _apply(self, a: Attempt, plan: Apply) -> Done | Requeue:
        admission = self._circuit.admit(plan.steps)
        if isinstance(admission, Hold):
            return self._hold(a, admission)
        statuses: dict[str, str] = {}
        try:
            for step in plan.steps:
                with tracing.span("step", {"saw.step": step_name(step)}):
                    statuses[step_name(step)] = self._run_step(a, step)
        except StepFailed as failed:
            return self._step_failed(a, failed, admission)
        except HolderPending as pending:
            return self._wait_for_holder(a, pending)
        except WaitForWindow as doubt:
            return hold_for_window(self._store, a, doubt, self._now_ms(), self._marks)
        except NoToken as slow:
            log.info("event.rate_limited", wait_ms=slow.wait_ms)
            return self._later(a, slow.wait_ms, "rate_limited", False)
        except LeaseLost:
            log.warning("event.lease_lost")
            self._flush(a)
            return Requeue(self._limits.lock_busy_delay_ms, "lease_lost", counts=False)
        self._circuit.succeeded(admission)
        duplicate = bool(statuses) and all(s == "duplicate" for s in statuses.values())
        outcome = Outcome.DUPLICATE if duplicate else Outcome.APPLIED
        return self._finish(a, outcome, plan.state, steps=statuses)

    # --- one step ---------------------------------------------------------------------------

    def _run_step(self, a: Attempt, step: Step) -> str:
        """Run `step` unless the ledger has it; return 'done', 'skipped' or 'duplicate'."""
        name = step_name(step)
        if a.ledger.is_done(name):
            record = a.ledger.steps[name]
            log.info("step.skipped", step=name, why="done by an earlier attempt")
            return "duplicate" if "duplicate_of" in record.result else "skipped"
        unfinished = a.ledger.unfinished(name)
        if unfinished is not None and self._settled(a, step, name, unfinished):
            return "done"
        evidence = self._call(step, name, lambda: self._runner.evidence(step))
        self._check_drift(a, step, evidence)
        try:
            # the fence: after the rate limiter's wait, the lease checked right before the send
            self._fence.wait_for_slot(a, self._runner.pace())
            if journaled(step):
                owner = self._begin(a, step, name, evidence)
                if owner.status == ClaimStatus.DUPLICATE:
                    log.info("step.duplicate", step=name, duplicate_of=owner.event_key)
                    return "duplicate"
                check_claim(step, name, owner)
            else:
                self._fence.before_send(a)
            a.stepped = True
            result = self._runner.run(step)
        except ApiError as exc:
            if maybe_applied(step, exc):
                return self._unanswered(a, step, name, evidence, exc)
            # Refused or never sent: nothing happened. (A dead letter then frees the business
            # key, so another report of the same invoice is not skipped as a duplicate.)
            if journaled(step):
                self._store.clear_step(a.event.key, name)
            raise StepFailed(name, exc, classify_permanent(exc), {}) from None
        finally:
            self._runner.unpace()
        self._done(a, name, result)
        return "done"

    def _check_drift(self, a: Attempt, step: Step, evidence: dict[str, Any]) -> None:
        """A grant to a subaccount the API reports disabled while we believe it enabled: the
        customer paid and still cannot send. Warn in the outcome and report the drift."""
        if (
            isinstance(step, AddCredits)
            and evidence.get("disabled")
            and a.state.lifecycle == Lifecycle.ACTIVE
        ):
            username = step.request.username
            a.warning = f"subaccount_disabled: the API reports {username} disabled"
            log.warning("step.subaccount_disabled", step=step_name(step), username=username)
            self._on_drift("unexpected_disabled", a.event.client_id, username)

    def _begin(self, a: Attempt, step: AddCredits, name: str, evidence: dict[str, Any]) -> Claim:
        leased_at = self._fence.now()
        begin = BeginStep(
            event_key=a.event.key,
            client_id=a.event.client_id,
            token=a.token,
            step=name,
            record=StepRecord(StepState.IN_PROGRESS, a.token, self._now_ms(), evidence),
            business_key=step.business_key,
            amount=step.request.amount,
            done=a.take_pending(),
        )
        held, owner = self._store.begin_step(begin)
        if not held:
            raise LeaseLost()
        self._fence.leased(a, leased_at)
        log.debug("step.started", step=name)
        return owner

    def _done(self, a: Attempt, name: str, result: dict[str, Any]) -> None:
        """Note a finished step; its record rides on the attempt's next Redis call."""
        self._flush(a)
        a.did_steps = True  # (set before the record is written: that write may still fail)
        a.pending = (name, StepRecord(StepState.DONE, a.token, self._now_ms(), result=result))
        log.info("step.done", step=name)

    def _flush(self, a: Attempt) -> None:
        """Write a finished step's record now, on a path that makes no other Redis call."""
        pending = a.take_pending()
        if pending is not None:
            self._store.step_done(a.event.key, pending)

    # --- endings ----------------------------------------------------------------------------

    def _step_failed(
        self, a: Attempt, failed: StepFailed, admission: Go | None = None
    ) -> Done | Requeue:
        held = self._circuit.failed(admission or Go(), failed.error, a.event.client_id)
        if held is not None:  # the API's failure, not the event's: no attempt spent
            return self._hold(a, held)
        if isinstance(failed.error, Transient):
            age = self._now_ms() - (a.info.published_ms or a.now_ms)
            verdict = on_transient(
                self._policy, failed.error, attempt=a.info.attempt, age_ms=age, rng=self._rng
            )
            if isinstance(verdict, GiveUp):
                return self._dead_letter(a, verdict.reason, verdict.detail, step=failed.step)
            log.info(
                "event.retry", step=failed.step, delay_ms=verdict.delay_ms, error=verdict.reason
            )
            return self._later(a, verdict.delay_ms, verdict.reason, True)
        return self._dead_letter(
            a, failed.reason, failed.detail, step=failed.step, readings=failed.readings
        )

    def _later(self, a: Attempt, delay_ms: int, reason: str, counts: bool) -> Requeue:
        """Re-queue after a failure (`counts`) or a wait. An event already partly applied keeps
        the client's lease through the delay: no other event of the client may act on the
        half-changed subaccount (or decide from state this event has not recorded yet) before
        this one finishes."""
        if a.partly_applied:
            if self._store.hold(
                a.event.key, a.event.client_id, a.token, a.take_pending(), delay_ms
            ):
                return Requeue(delay_ms, reason, counts=counts, lease_token=a.token)
        else:
            self._flush(a)
            self._store.release(a.event.key, a.event.client_id, a.token)
        return Requeue(delay_ms, reason, counts=counts)

    def _hold(self, a: Attempt, held: Hold) -> Done | Requeue:
        """The API is unavailable for an operation the plan needs (its circuit is open): wait
        for the next probe without spending an attempt, up to the retry age limit."""
        waited = self._now_ms() - (a.info.published_ms or a.now_ms)
        if waited > self._policy.max_age_ms:
            detail = f"{held.detail}; older than {self._policy.max_age_ms} ms"
            return self._dead_letter(a, Reason.RETRIES_EXHAUSTED, detail)
        # debug: thousands of events wait through an outage; the circuit's own lines (opened,
        # probe, closed) and the metric `saw_api_circuit_total{action="held"}` say it once
        log.debug("event.waiting", why="api_unavailable", operation=held.operation,
                  delay_ms=held.delay_ms)  # fmt: skip
        return self._later(a, held.delay_ms, "api_unavailable", counts=False)

    def _wait_for_holder(self, a: Attempt, pending: HolderPending) -> Done | Requeue:
        """Another event holds this grant's invoice and has not settled: look again later,
        backing off with the time waited (not a failure), up to the retry age limit."""
        waited = self._now_ms() - (a.info.published_ms or a.now_ms)
        if waited > self._policy.max_age_ms:
            failed = holder_never_settled(pending.step, pending.owner, waited)
            return self._dead_letter(a, failed.reason, failed.detail, step=pending.step)
        delay = min(self._policy.max_backoff_ms, max(self._policy.min_backoff_ms, waited // 2))
        log.info("event.waiting", why="business_key_pending", holder=pending.owner.event_key)
        # The lease goes back even if this event is partly applied: the holder may need it.
        self._flush(a)
        self._store.release(a.event.key, a.event.client_id, a.token)
        return Requeue(delay, "business_key_pending", counts=False)

    def _wait(self, a: Attempt) -> Done | Requeue:
        waited = self._now_ms() - (a.info.published_ms or a.now_ms)
        if waited > self._limits.unknown_client_wait_ms:
            detail = f"client {a.event.client_id} not onboarded after {waited} ms"
            return self._dead_letter(a, Reason.CLIENT_UNKNOWN, detail)
        self._store.release(a.event.key, a.event.client_id, a.token)
        log.info("event.waiting", why="client_unknown")
        return Requeue(self._limits.unknown_client_retry_ms, "client_unknown", counts=False)

    def _dead_letter(
        self,
        a: Attempt,
        reason: Reason,
        detail: str,
        *,
        step: str | None = None,
        readings: dict[str, Any] | None = None,
    ) -> Done | Requeue:
        grant = a.grant
        if grant is not None:  # a grant that never took effect holds its invoice no longer
            name = step_name(grant)
            self._store.release_claim(a.event.key, name, grant.business_key, a.take_pending())
        now = self._now_ms()
        letter = DeadLetter(
            key=a.event.key,
            event=a.raw,
            reason=reason,
            detail=redactor.scrub(detail),
            attempts=a.info.attempt,
            first_failure_ms=a.info.first_failure_ms or now,
            last_failure_ms=now,
            step=step,
            readings=readings or {},
            grant_step=step_name(grant) if grant else None,
            business_key=grant.business_key if grant else None,
        )
        log.warning("event.dead_lettered", reason=reason.value, step=step, detail=letter.detail)
        return self._finish(a, Outcome.DEAD_LETTERED, None, reason=reason, dead=letter)

    def _finish(
        self,
        a: Attempt,
        outcome: Outcome,
        state: ClientState | None,
        *,
        reason: str | None = None,  # a dead letter's `Reason`, or why an event was skipped
        steps: dict[str, str] | None = None,
        dead: DeadLetter | None = None,
    ) -> Done | Requeue:
        record = outcome_record(a.event.key, a.raw, outcome, reason, a.info, self._now_ms(), steps)
        if a.warning:
            record["warning"] = a.warning
        finish = Finish(record, state, dead.encode() if dead else None, a.grant)
        done = a.take_pending()
        if not self._store.finish(
            a.event.key, a.event.client_id, a.token, finish, self._now_ms(), done
        ):
            log.warning("event.lease_lost", at="finish")
            return Requeue(self._limits.lock_busy_delay_ms, "lease_lost", counts=False)
        log.info("event.finished", outcome=outcome, reason=reason, steps=steps)
        self._observe(outcome, a.event.type.value)
        return Done(outcome)

    def _release_quietly(self, a: Attempt) -> None:
        try:
            self._flush(a)
            self._store.release(a.event.key, a.event.client_id, a.token)
        except Exception as exc:  # the lease expires by itself; the original error matters more
            log.warning("event.release_failed", error=str(exc))
