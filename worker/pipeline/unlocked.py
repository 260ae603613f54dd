"""Endings that need no client lease: a duplicate delivery, an invalid event, a bug of ours.

A mixin of `Executor` (`worker.pipeline.executor`): these record an outcome without the
client's lease, so they share nothing with a running attempt but the store and the observer.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from typing import Any

from handlers.errors import InvalidEvent
from handlers.events import Event
from handlers.outcomes import Outcome, Reason
from worker.log import get_logger, redactor
from worker.pipeline.attempts import AttemptStore, Opened
from worker.pipeline.outcomes import DeadLetter, outcome_record
from worker.pipeline.results import AttemptInfo, Done, OutcomeObserver, Requeue
from worker.pipeline.retry import RetryPolicy, backoff_ms

log = get_logger("worker.pipeline.executor")


class UnlockedEndings:
    """Outcomes recorded without the client's lease."""

    _store: AttemptStore
    _observe: OutcomeObserver
    _policy: RetryPolicy
    _rng: random.Random
    _clock: Callable[[], float]

    def _duplicate(self, event: Event, opened: Opened, info: AttemptInfo) -> Done:
        reason = f"already {opened.outcome or 'finished'}"
        record = outcome_record(
            event.key, event.to_message(), Outcome.DUPLICATE, reason, info, self._now_ms()
        )
        self._store.record_duplicate(event.client_id, record)
        log.info("event.duplicate", first_outcome=opened.outcome)
        self._observe(Outcome.DUPLICATE, event.type.value)
        return Done(Outcome.DUPLICATE)

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
        letter = DeadLetter(key, event, reason, detail, info.attempt, first, now)
        outcome = outcome_record(key, event, Outcome.DEAD_LETTERED, reason, info, now)
        self._store.record_unlocked(key, outcome, letter.encode())
        log.warning("event.dead_lettered", reason=reason.value, detail=detail)
        self._observe(Outcome.DEAD_LETTERED, str(event.get("type", "")))
        return Done(Outcome.DEAD_LETTERED)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)
