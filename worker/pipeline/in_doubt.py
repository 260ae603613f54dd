"""The in-doubt window: a call with no answer may still be applied until the API settles it.

A write that got no answer (a timeout, a dropped connection, a 5xx that may hide a commit) is
*in doubt* until `API_SETTLE_S` after it was sent: a slow server can still apply it. Until the
window has passed nothing else is sent for the client (the attempt keeps the client's lease and
is requeued to come back with it), the step's ledger record says until when it is in doubt, and
its evidence is read only afterwards, so a late effect is seen rather than sent again. A record
left by a worker that died mid-call carries no end: its window is counted from when the step
began plus the longest a call can take. A window of 0 switches all this off: every unanswered
call is judged at once (the behaviour before the window; `make chaos` shows it loses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from worker import keys
from worker.errors import BrokerUnavailable
from worker.log import get_logger
from worker.pipeline.attempts import AttemptStore
from worker.pipeline.ledger import StepRecord, StepState
from worker.pipeline.progress import Attempt
from worker.pipeline.results import Requeue

log = get_logger(__name__)

UNTIL = "in_doubt_until_ms"  # the evidence field of a step record that is in doubt
SLACK_MS = 50  # come back a little after an in-doubt window, not a little before


@dataclass(frozen=True)
class Window:
    """How long a call stays in doubt (`settle_ms`), and the longest a call can take."""

    settle_ms: int
    max_call_ms: int

    def after_failure(self, failed_at_ms: int) -> int:
        """The end of the window of a call that failed (gave up) at `failed_at_ms`: it was sent
        no later than that, so the API cannot apply it after this."""
        return failed_at_ms + self.settle_ms

    def until(self, record: StepRecord) -> int:
        """The end of the window of an unfinished step's call, as its record tells it."""
        explicit = record.evidence.get(UNTIL)
        if isinstance(explicit, int):
            return explicit
        if not self.settle_ms:  # no window: the API is taken to apply nothing late
            return record.at_ms
        return record.at_ms + self.max_call_ms + self.settle_ms  # its worker died mid-call


class WaitForWindow(Exception):
    """A step's call is in doubt: come back once its window has passed. `record`, when given,
    is the in-doubt record to write for the step (the call just failed in this attempt)."""

    def __init__(self, step: str, until_ms: int, record: StepRecord | None = None) -> None:
        self.step = step
        self.until_ms = until_ms
        self.record = record
        super().__init__(f"step {step} is in doubt until {until_ms}")


def in_doubt_record(token: str, now_ms: int, evidence: dict[str, Any], until_ms: int) -> StepRecord:
    """The ledger record of a step whose call is in doubt: its evidence and the window's end."""
    return StepRecord(StepState.IN_PROGRESS, token, now_ms, {**evidence, UNTIL: until_ms})


class Marks:
    """Until when a client's call is in doubt, told to its other events, so they come back then
    rather than every `LOCK_BUSY_DELAY_MS`. Advisory: it expires with the window, and the lease
    is what keeps them off the client. Without a Redis client it marks nothing."""

    def __init__(self, client: redis.Redis | None, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix

    def mark(self, client_id: str, until_ms: int, now_ms: int) -> None:
        if self._redis is not None:
            key = keys.in_doubt(self._prefix, client_id)
            self._guard(lambda r: r.set(key, until_ms, px=max(1, until_ms - now_ms + SLACK_MS)))

    def wait_ms(self, client_id: str, now_ms: int) -> int:
        """How long until the client's call in doubt is decided (0: none is)."""
        if self._redis is None:
            return 0
        key = keys.in_doubt(self._prefix, client_id)
        until = self._guard(lambda r: r.get(key))
        return max(0, int(until) - now_ms) + SLACK_MS if until else 0

    def _guard(self, call: Any) -> Any:
        try:
            return call(self._redis)
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"could not read or write an in-doubt mark: {exc}") from exc


def hold_for_window(
    store: AttemptStore, a: Attempt, doubt: WaitForWindow, now_ms: int, marks: Marks
) -> Requeue:
    """A call of this event is in doubt: keep the client's lease (nothing else is sent for the
    client) and come back with it once the window has passed. The call that just went
    unanswered counts as a failed attempt (never a dead letter while in doubt: it is judged
    first); coming back early to wait again counts nothing."""
    done = a.take_pending()
    if doubt.record is not None:  # written now, with the lease kept: it says until when
        if done is not None:
            store.step_done(a.event.key, done)
        done = (doubt.step, doubt.record)
    delay = max(0, doubt.until_ms - now_ms) + SLACK_MS
    held = store.hold(a.event.key, a.event.client_id, a.token, done, delay)
    if held:
        marks.mark(a.event.client_id, doubt.until_ms, now_ms)
    log.info("event.in_doubt", step=doubt.step, until_ms=doubt.until_ms, lease_kept=held)
    counts = doubt.record is not None  # a call just went unanswered
    return Requeue(delay, "in_doubt", counts=counts, lease_token=a.token if held else None)
