"""The monitor's leader lease: one Redis key with a holder token and an expiry.

A lease, not a mutex: it can expire while its holder still works, so the holder renews it
between API calls and stops scanning as soon as a renewal fails. Only the token's holder can
renew or release it.
"""

from __future__ import annotations

import contextlib
import secrets

import redis

from worker.errors import BrokerUnavailable

# Take the lease if free, or extend it if we hold it. 1 = held by us, 0 = held by another.
_HOLD = """
local token = ARGV[1]
local ttl_ms = ARGV[2]
local holder = redis.call('GET', KEYS[1])
if holder == token then
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], token, 'PX', ttl_ms)
  return 1
end
return 0
"""

_RELEASE = """
local token = ARGV[1]
if redis.call('GET', KEYS[1]) == token then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseLost(Exception):
    """Another monitor holds the lease now: stop scanning."""


class Lease:
    """A named lease held under a random token."""

    def __init__(self, client: redis.Redis, key: str, ttl_ms: int) -> None:
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = secrets.token_hex(12)
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)

    def hold(self) -> bool:
        """Take or renew the lease; True while we are the leader."""
        try:
            return bool(self._hold(keys=[self.key], args=[self.token, self.ttl_ms]))
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"could not renew the monitor lease ({exc})") from exc

    def release(self) -> None:
        """Give the lease up (only if we still hold it), so another monitor takes over at once."""
        with contextlib.suppress(redis.RedisError):  # (if not, it expires by itself)
            self._release(keys=[self.key], args=[self.token])
