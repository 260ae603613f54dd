"""Client-side rate limiting: token buckets that make callers wait instead of provoking 429s.

`TokenBucket` is shared by every thread of one process. `RedisTokenBucket` is shared by every
process that uses the same Redis key: one atomic Lua call per request decides and reserves a slot,
so N worker processes together honour the configured rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

from worker.errors import BrokerUnavailable


class RateLimiter(Protocol):
    def acquire(self) -> None:
        """Block until one request may be sent."""


class Unlimited:
    """No limit: `acquire` returns at once."""

    def acquire(self) -> None:
        return None

    def reserve(self) -> float:
        return 0.0


def reserve(limiter: RateLimiter) -> float:
    """Take one slot of `limiter` now or in the future and return how long to wait for it (s),
    without waiting; a limiter that cannot reserve is acquired at once (and returns 0)."""
    reserve_slot = getattr(limiter, "reserve", None)
    if reserve_slot is None:
        limiter.acquire()
        return 0.0
    wait: float = reserve_slot()
    return wait


class _Bucket:
    """What both buckets share: validated rate and burst, and waiting for a reserved slot."""

    def __init__(self, rate: float, burst: int, sleep: Callable[[float], None]) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._sleep = sleep

    def reserve(self) -> float:
        """Take one token now or in the future; return how long the caller must wait (s)."""
        raise NotImplementedError

    def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)


class TokenBucket(_Bucket):
    """A thread-safe token bucket: `rate` tokens per second, at most `burst` saved up.

    Each caller reserves its slot under the lock, then sleeps outside it, so waiting callers are
    served in arrival order and the lock is never held while sleeping.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(rate, burst, sleep)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._stamp = clock()

    def reserve(self) -> float:
        """Take one token now or in the future; return how long the caller must wait (s)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


# KEYS[1] = bucket hash; ARGV = rate per second, burst. Returns the wait in microseconds.
# Time comes from the Redis server so processes on different hosts agree on it.
_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - stamp) * rate / 1000000) - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(1000 * (burst / rate) + 60000))
if tokens >= 0 then return 0 end
return math.ceil(-tokens * 1000000 / rate)
"""


class RedisTokenBucket(_Bucket):
    """A token bucket kept in Redis, shared by every process that names the same key."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        rate: float,
        burst: int,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(rate, burst, sleep)
        self._key = key
        self._script = client.register_script(_BUCKET_LUA)

    def reserve(self) -> float:
        """Reserve one slot in Redis; return how long the caller must wait (s)."""
        try:
            wait_us = self._script(keys=[self._key], args=[repr(self.rate), self.burst])
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"rate limiter could not reach Redis: {exc}") from exc
        return int(wait_us) / 1_000_000
