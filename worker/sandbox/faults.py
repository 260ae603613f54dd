"""Fault configuration and injection: latency, rate limiting, server errors, hangs, drops and
late applies (a call applied after the client gave up on it, as a slow server does).

Counters (`*_next`) make faults deterministic for tool tests; rates (drawn from a seeded RNG)
serve chaos runs and benchmarks. Rate limiting is a token bucket of capacity max(1, rps) refilled
at rps tokens per second, shared by every API route.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field

from worker.sandbox.failures import TOO_MANY_REQUESTS, ApiFailure
from worker.sandbox.journal import Fault

OperationName = Literal[
    "create", "update", "add_credits", "remove_credits", "set_recurring",
    "enable", "disable", "delete", "get_credits", "list",
]  # fmt: skip
MUTATING: frozenset[str] = frozenset(get_args(OperationName)) - {"get_credits", "list"}
Triggered = Literal["error", "hang", "drop", "fail_after_commit", "late"]


class _Config(BaseModel):
    """Strict: a boolean or a string is never taken for a number (JSON integers are numbers)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class FaultSpec(_Config):
    """Faults for one operation (or the default). `*_next` counters are consumed before rates."""

    latency_ms: float = Field(0, ge=0, description="added to every call")
    jitter_ms: float = Field(0, ge=0, description="plus uniform(0, jitter_ms)")
    error_rate: float = Field(0, ge=0, le=1, description="answer error_status without applying")
    error_status: Literal[500, 502, 503] = 503
    error_next: int = Field(0, ge=0, description="the next N calls get error_status")
    hang_rate: float = Field(0, ge=0, le=1, description="sleep hang_s, then close, not applied")
    hang_next: int = Field(0, ge=0)
    hang_s: float = Field(30, ge=0)
    drop_rate: float = Field(0, ge=0, le=1, description="apply, then close without a response")
    drop_next: int = Field(0, ge=0)
    fail_after_commit_rate: float = Field(
        0, ge=0, le=1, description="apply, then answer error_status (a server error after commit)"
    )
    fail_after_commit_next: int = Field(0, ge=0)
    late_rate: float = Field(
        0, ge=0, le=1, description="wait for the client to give up, then late_ms, then apply"
    )
    late_next: int = Field(0, ge=0)
    late_ms: float = Field(0, ge=0, description="how long after the client gave up it applies")
    late_wait_s: float = Field(
        30, ge=0, description="the longest wait for the client to give up (then applied anyway)"
    )


class RateLimit(_Config):
    """Token-bucket rate limit over all API routes; over it, 429 with Retry-After."""

    rps: float | None = Field(None, gt=0)
    retry_after_s: int = Field(1, ge=0)


class FaultConfig(_Config):
    """The whole fault configuration; PUT /_sandbox/faults replaces it (and reseeds the RNG)."""

    seed: int | None = None
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    default: FaultSpec = Field(default_factory=FaultSpec)
    operations: dict[OperationName, FaultSpec] = Field(default_factory=dict)


class TokenBucket:
    """Allows `rate` calls per second on average, in bursts of at most max(1, rate)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self._clock = clock
        self._updated = clock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class FaultInjector:
    """The live fault configuration (counters count down in it), its RNG and its bucket."""

    def __init__(self, start: FaultConfig) -> None:
        self._lock = threading.Lock()
        self._start = start.model_copy(deep=True)
        self.replace(start)

    def replace(self, config: FaultConfig) -> FaultConfig:
        """Install a new configuration: fresh counters, RNG reseeded, bucket full."""
        with self._lock:
            self._config = config.model_copy(deep=True)
            self._rng = random.Random(config.seed)
            rps = config.rate_limit.rps
            self._bucket = TokenBucket(rps) if rps else None
            return self._config.model_copy(deep=True)

    def reset(self) -> FaultConfig:
        """Back to the configuration the app started with."""
        return self.replace(self._start)

    def current(self) -> FaultConfig:
        """A copy of the live configuration, with counters as consumed so far."""
        with self._lock:
            return self._config.model_copy(deep=True)

    def spec_for(self, operation: str) -> FaultSpec:
        """The live spec of `operation`, or the default one."""
        with self._lock:
            return self._config.operations.get(cast(OperationName, operation), self._config.default)

    def delay_s(self, spec: FaultSpec) -> float:
        """Latency plus jitter for one call, in seconds."""
        with self._lock:
            jitter = self._rng.uniform(0, spec.jitter_ms) if spec.jitter_ms else 0.0
        return (spec.latency_ms + jitter) / 1000

    def too_many_requests(self) -> ApiFailure | None:
        """The 429 to answer if the rate limit is exceeded, else None."""
        with self._lock:
            if self._bucket is None or self._bucket.take():
                return None
            retry_after = str(self._config.rate_limit.retry_after_s)
        return ApiFailure(429, TOO_MANY_REQUESTS, headers={"Retry-After": retry_after})

    def take(self, spec: FaultSpec, kind: Triggered) -> bool:
        """Whether this call gets fault `kind`: a pending `<kind>_next` first, then the rate."""
        counter = f"{kind}_next"
        with self._lock:
            remaining = int(getattr(spec, counter))
            if remaining > 0:
                setattr(spec, counter, remaining - 1)
                return True
            rate = float(getattr(spec, f"{kind}_rate"))
            return rate > 0 and self._rng.random() < rate

    def before_apply(self, spec: FaultSpec) -> Fault | None:
        """The fault that stops this call before it is applied: an error or a hang, if any."""
        if self.take(spec, "error"):
            return "error"
        if self.take(spec, "hang"):
            return "hang"
        return None
