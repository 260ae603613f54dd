"""The fence before every send: the client's lease is ours, and stays ours through the call.

Immediately before each API write, after its rate-limiter wait, the attempt knows its lease
still has at least `need_ms` left (the longest call plus the in-doubt window): a worker that dies
mid-call then holds the client until the API can no longer apply that call, and no two calls of
one client are ever in flight at once. "Knows" means: the lease was set by a Redis call that
began less than `lease_ms - need_ms` ago on this process's monotonic clock (a Redis expiry can
only come later), or it is renewed now in Redis, which also fails the step if it was lost.
A rate-limiter wait is reserved before it is waited for; the lease is first extended to cover
it, or, if the wait is longer than a whole lease, the step is not sent and the event requeued.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from worker.pipeline.attempts import AttemptStore
from worker.pipeline.failures import LeaseLost
from worker.pipeline.progress import Attempt


class FenceLost(LeaseLost):
    """The fence found the lease lost before a send: the call was not sent."""


class NoToken(Exception):
    """The rate limiter cannot give this step a slot within a lease: requeue, unsent."""

    def __init__(self, wait_ms: int) -> None:
        self.wait_ms = wait_ms
        super().__init__(f"the rate limiter's next slot is {wait_ms} ms away")


@dataclass(frozen=True)
class FenceRules:
    """The lease as `open`, `renew` and `begin_step` set it, what a send needs left of it, and
    the longest rate-limiter wait a step holds the lease through."""

    lease_ms: int
    need_ms: int
    max_wait_ms: int


class Fence:
    """Checks (and renews when needed) the attempt's lease before each send."""

    def __init__(
        self,
        store: AttemptStore,
        rules: FenceRules,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self.rules = rules
        self._clock = clock
        self._sleep = sleep

    def now(self) -> float:
        """The monotonic time to note just before a Redis call that sets the lease."""
        return self._clock()

    def leased(self, a: Attempt, at: float, ttl_ms: int | None = None) -> None:
        """Note that a Redis call begun at `at` set the lease (for `ttl_ms`, default a lease)."""
        a.lease_at = at
        a.lease_ms = ttl_ms if ttl_ms is not None else self.rules.lease_ms

    def remaining_ms(self, a: Attempt) -> float:
        """The least the lease can have left, by this process's clock."""
        return a.lease_ms - (self._clock() - a.lease_at) * 1000

    def wait_for_slot(self, a: Attempt, wait_s: float) -> None:
        """Wait `wait_s` for a reserved rate-limiter slot, the lease extended to cover it;
        raise `NoToken` (unwaited) if the wait is longer than a whole lease."""
        wait_ms = int(wait_s * 1000)
        if wait_ms <= 0:
            return
        if wait_ms > self.rules.max_wait_ms:
            raise NoToken(wait_ms)
        if self.remaining_ms(a) < wait_ms + self.rules.need_ms:
            ttl = wait_ms + self.rules.lease_ms
            self._renew(a, ttl)
        self._sleep(wait_s)

    def before_send(self, a: Attempt) -> None:
        """The fence: go on only with a lease that outlasts the call and its window. A pending
        step record rides on the renewal (as the renewal before each later step always did)."""
        if a.pending is None and self.remaining_ms(a) >= self.rules.need_ms:
            return
        self._renew(a, self.rules.lease_ms)

    def _renew(self, a: Attempt, ttl_ms: int) -> None:
        at = self._clock()
        event = a.event
        if not self._store.renew(event.key, event.client_id, a.token, a.take_pending(), ttl_ms):
            raise FenceLost()
        self.leased(a, at, ttl_ms)
