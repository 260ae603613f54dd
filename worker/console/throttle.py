"""Login limits: after a few failures, an address or a user name must wait, twice as long after
each further failure, and an attempt made before the wait is over gets 429 with Retry-After.

Counted in Redis (shared by every console process), per client address and per user name tried,
for the login form and for Bearer tokens on /api. An attempt refused with 429 is not checked and
does not count; the failures of a key are forgotten `window_s` after the last one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import redis

from worker import keys
from worker.settings import Settings


def delay_s(failures: int, free: int, max_delay_s: float) -> float:
    """The wait after `failures` failures: none for the first `free`, then 1 s, 2 s, 4 s, ..."""
    if failures < free:
        return 0.0
    return float(min(2.0 ** min(failures - free, 40), max_delay_s))


@dataclass(frozen=True)
class LoginThrottle:
    """The failures of addresses and user names, and the wait each has earned."""

    client: redis.Redis
    prefix: str
    free: int
    max_delay_s: float
    window_s: int

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Settings) -> LoginThrottle:
        return cls(
            client,
            settings.key_prefix,
            settings.console_login_free_attempts,
            float(settings.console_login_max_delay_s),
            settings.console_login_window_s,
        )

    def retry_after_s(self, subjects: list[tuple[str, str]], now_s: float) -> int:
        """Whole seconds until every one of `subjects` (`(kind, who)`) may try again; 0: now."""
        pipe = self.client.pipeline(transaction=False)
        for kind, who in subjects:
            pipe.hget(self._key(kind, who), "until_s")
        waits = [float(v) - now_s for v in pipe.execute() if v is not None]
        longest = max([0.0, *waits])
        return math.ceil(longest) if longest > 0 else 0

    def failed(self, subjects: list[tuple[str, str]], now_s: float) -> None:
        """Count one failure against each subject and set the wait it earned."""
        pipe = self.client.pipeline(transaction=True)
        for kind, who in subjects:
            pipe.hincrby(self._key(kind, who), "failures", 1)
            pipe.expire(self._key(kind, who), self.window_s)
        counts: list[Any] = pipe.execute()[::2]
        pipe = self.client.pipeline(transaction=True)
        for (kind, who), count in zip(subjects, counts, strict=True):
            wait = delay_s(int(count), self.free, self.max_delay_s)
            pipe.hset(self._key(kind, who), "until_s", repr(now_s + wait))
        pipe.execute()

    def succeeded(self, user: str) -> None:
        """A user who got in starts afresh (its address keeps its count, so an attacker's own
        account cannot wash the address clean between guesses)."""
        self.client.delete(self._key("user", user))

    def _key(self, kind: str, who: str) -> str:
        return keys.console_login_failures(self.prefix, kind, who[:200])
