"""Subaccounts sending mail, so balances fall between two readings as they do in production.

`PUT /_sandbox/sending` sets a total rate in emails per second (0 stops) and an optional RNG
seed. Consumption advances lazily from a clock rather than in a background thread: whenever a
request is about to touch the state, the emails due since the last advance (elapsed time * rate,
the fraction carried over) are spread over the *senders*, the enabled `one_time_credit`
subaccounts in creation order. Each sender gets an even share; the remainder goes one email each
to distinct senders drawn with the seeded RNG. A sender sends from its balance (balance falls,
`used` rises); a share larger than its balance is refused for the excess (a subaccount at 0 cannot
send). Given the seed, the clock's readings and the requests, the outcome is deterministic.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from worker.sandbox.state import SandboxState

MAX_RATE = 1_000_000.0
Clock = Callable[[], float]


class SendingConfig(BaseModel):
    """The body of `PUT /_sandbox/sending`: strict numbers (a boolean or a string is a 400)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    emails_per_s: float = Field(
        ge=0, le=MAX_RATE, allow_inf_nan=False, description="total over all senders; 0 stops"
    )
    seed: int | None = Field(None, description="RNG seed of the remainder draw; null: unseeded")


class SendingStatus(SendingConfig):
    """The sending configuration and what it did since the last reset."""

    sent: int = Field(description="emails sent (credits consumed) since the last reset")
    refused: int = Field(description="emails a sender at 0 credits could not send")


class Sending:
    """The live sending rate, its RNG and counters; callers pass the state whose lock guards it."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Stopped, unseeded, counters at zero."""
        self._install(SendingConfig(emails_per_s=0))
        self.sent = 0
        self.refused = 0

    def _install(self, config: SendingConfig) -> None:
        self._config = config
        self._rng = random.Random(config.seed)
        self._carry = 0.0
        self._last = self._clock()

    def configure(self, state: SandboxState, config: SendingConfig) -> SendingStatus:
        """Account for the time so far at the old rate, then start the new one (RNG reseeded)."""
        with state.lock:
            self.advance(state)
            self._install(config)
            return self.status()

    def status(self) -> SendingStatus:
        """The configuration and the counters."""
        return SendingStatus(**self._config.model_dump(), sent=self.sent, refused=self.refused)

    def advance(self, state: SandboxState) -> None:
        """Send the emails due since the last advance (call before reading or changing state)."""
        with state.lock:
            now = self._clock()
            elapsed, self._last = max(0.0, now - self._last), now
            due = elapsed * self._config.emails_per_s + self._carry
            emails = int(due)
            self._carry = due - emails
            if emails:
                self._send(state, emails)

    def _send(self, state: SandboxState, emails: int) -> None:
        senders = state.senders()
        if not senders:
            return
        share, rest = divmod(emails, len(senders))
        extra = set(self._rng.sample(range(len(senders)), rest))
        for index, username in enumerate(senders):
            wanted = share + (1 if index in extra else 0)
            sent = state.consume(username, wanted)
            self.sent += sent
            self.refused += wanted - sent
