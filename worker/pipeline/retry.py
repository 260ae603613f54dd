"""Retry decisions as values: given a failure and the attempt so far, retry when or give up.

Pure functions (the caller passes the clock and the random source), in the manner of
procrastinate's `get_retry_decision`: the actor only carries out what is returned here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from handlers.outcomes import Reason
from worker.errors import Ambiguous, ApiError, Conflict, NotFound, Transient


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    max_age_ms: int
    min_backoff_ms: int
    max_backoff_ms: int


@dataclass(frozen=True)
class RetryLater:
    delay_ms: int
    reason: str


@dataclass(frozen=True)
class GiveUp:
    reason: Reason
    detail: str


def backoff_ms(policy: RetryPolicy, attempt: int, rng: random.Random) -> int:
    """Exponential backoff with full jitter: uniform(min, min·2^(attempt-1)), capped."""
    ceiling = min(policy.max_backoff_ms, policy.min_backoff_ms * 2 ** min(attempt - 1, 30))
    return int(rng.uniform(policy.min_backoff_ms, max(policy.min_backoff_ms, ceiling)))


def on_transient(
    policy: RetryPolicy,
    error: Transient,
    *,
    attempt: int,
    age_ms: int,
    rng: random.Random,
) -> RetryLater | GiveUp:
    """Retry a transient failure after a backoff (at least `Retry-After`), within the limits."""
    if attempt >= policy.max_attempts:
        return GiveUp(Reason.RETRIES_EXHAUSTED, f"{attempt} attempts; last: {error}")
    delay = backoff_ms(policy, attempt, rng)
    if error.retry_after is not None:
        delay = max(delay, int(error.retry_after * 1000))
    if age_ms + delay > policy.max_age_ms:
        return GiveUp(Reason.RETRIES_EXHAUSTED, f"older than {policy.max_age_ms} ms; last: {error}")
    return RetryLater(delay, str(error))


def classify_permanent(error: ApiError) -> Reason:
    """The dead-letter reason of an error that retrying cannot fix."""
    if isinstance(error, NotFound):
        return Reason.NOT_FOUND
    if isinstance(error, Conflict):
        return Reason.CONFLICT
    if isinstance(error, Ambiguous):
        return Reason.AMBIGUOUS_OUTCOME
    return Reason.PERMANENT_ERROR
