"""Judging a call that had no answer: wait out its in-doubt window, then read the evidence.

A mixin of `Executor` (`worker.pipeline.executor`): the resolution table is in
`worker.pipeline.steps`, the window in `worker.pipeline.in_doubt`; this is where an attempt
applies them to one step and records what they decided.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, assert_never

from handlers.outcomes import Reason
from handlers.plan import Step, step_name
from worker.errors import ApiError, Transient
from worker.log import get_logger
from worker.pipeline.attempts import AttemptStore, Grant
from worker.pipeline.failures import StepFailed
from worker.pipeline.grants import ours_since
from worker.pipeline.in_doubt import WaitForWindow, Window, in_doubt_record
from worker.pipeline.ledger import StepRecord
from worker.pipeline.progress import Attempt
from worker.pipeline.retry import GiveUp, RetryPolicy, classify_permanent, on_transient
from worker.pipeline.steps import Applied, NotApplied, StepRunner, Undecidable, journaled

log = get_logger("worker.pipeline.executor")


class Judging:
    """Decides unanswered steps by evidence, only once their window has passed."""

    _store: AttemptStore
    _runner: StepRunner
    _window: Window
    _policy: RetryPolicy
    _rng: random.Random

    def _now_ms(self) -> int:
        raise NotImplementedError

    def _done(self, a: Attempt, name: str, result: dict[str, Any]) -> None:
        raise NotImplementedError

    def _settled(self, a: Attempt, step: Step, name: str, unfinished: StepRecord) -> bool:
        """An earlier attempt's call of this step had no answer: wait out its in-doubt window,
        then judge it by evidence; True if it took effect. (Sent again only if it did not.)"""
        until = self._window.until(unfinished)
        if until > self._now_ms():
            raise WaitForWindow(name, until)
        if self._resolve(a, step, unfinished.evidence):
            return True
        if not journaled(step):  # decided: not applied (a grant's record is replaced at begin)
            self._store.clear_step(a.event.key, name)
        retry = Transient("no answer, proven not applied after its window", operation=name)
        age = self._now_ms() - (a.info.published_ms or a.now_ms)
        verdict = on_transient(
            self._policy, retry, attempt=a.info.attempt, age_ms=age, rng=self._rng
        )
        if isinstance(verdict, GiveUp):
            # out of attempts (each unanswered call spent one): a dead letter, nothing held
            raise StepFailed(name, retry, Reason.RETRIES_EXHAUSTED, {})
        return False  # attempts left: sent again now

    def _unanswered(
        self, a: Attempt, step: Step, name: str, evidence: dict[str, Any], exc: ApiError
    ) -> str:
        """A call that may have been applied: judge it by evidence, never send it blindly."""
        log.warning("step.ambiguous", step=name, error=str(exc))
        now = self._now_ms()
        until = self._window.after_failure(now)
        if until > now:  # the API may still apply it: judge it only after the window
            raise WaitForWindow(name, until, in_doubt_record(a.token, now, evidence, until))
        if self._resolve(a, step, evidence):
            return "done"
        self._store.clear_step(a.event.key, name)  # proven not applied: send again later
        retry = Transient(f"{exc}; proven not applied", operation=exc.operation)
        raise StepFailed(name, retry, Reason.RETRIES_EXHAUSTED, {}) from None

    def _resolve(self, a: Attempt, step: Step, evidence: dict[str, Any]) -> bool:
        """Judge an unanswered step (a grant net of our other grants of the client since it
        began); True if it took effect. Raises StepFailed if undecidable."""
        name = step_name(step)
        ours = None
        if journaled(step):
            grant = Grant(a.event.key, name, step.request.amount)
            ours = ours_since(self._store, a.event.client_id, grant)
        resolution = self._call(step, name, lambda: self._runner.resolve(step, evidence, ours))
        log.info("step.resolved", step=name, resolution=type(resolution).__name__)
        match resolution:
            case Applied():
                self._done(a, name, resolution.result)
                return True
            case Undecidable():
                raise StepFailed(name, None, Reason.AMBIGUOUS_OUTCOME, resolution.readings)
            case NotApplied():
                return False
            case _:
                assert_never(resolution)

    def _call(self, step: Step, name: str, fn: Callable[[], Any]) -> Any:
        """Run a read (evidence, resolution); a failure there leaves the ledger as it was."""
        try:
            return fn()
        except ApiError as exc:
            raise StepFailed(name, exc, classify_permanent(exc), {}) from None
