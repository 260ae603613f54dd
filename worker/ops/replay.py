"""Replay a dead letter: put its event back on the queue, atomically with the ledger cleanup.

The ledger keeps the steps the event already completed, so a replay resumes at the first step
not done; nothing is applied twice. For an `ambiguous_outcome`, the operator who has checked the
subaccount can say what happened to the unresolved step (`resolve="applied"` or "not_applied").
A `business_key_conflict` is replayed only as settled (`resolve="applied"`).
"""

from __future__ import annotations

import time
from typing import Any, Literal

import redis

from handlers.events import parse_event
from handlers.outcomes import Reason
from worker import keys
from worker.errors import BrokerUnavailable, SubaccountWorkerError
from worker.ops.dead_letters import DeadLetters
from worker.pipeline.ledger import OUTCOME_FIELD, StepRecord, StepState
from worker.pipeline.publish import Published, Publisher, build_message

Resolve = Literal["applied", "not_applied"]


class ReplayError(SubaccountWorkerError):
    """The dead letter cannot be replayed as asked; the message says why and what to do."""


def replay(
    client: redis.Redis,
    publisher: Publisher,
    dead_letters: DeadLetters,
    prefix: str,
    key: str,
    *,
    resolve: Resolve | None = None,
) -> Published:
    """Re-enqueue dead letter `key`; its record is removed in the same transaction, which fails
    (ReplayError) if the dead letters changed meanwhile: two replays never both happen."""
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(keys.dead_letters(prefix))  # type: ignore[no-untyped-call]
            return _replay(pipe, publisher, dead_letters, prefix, key, resolve)
        except redis.WatchError:
            raise ReplayError(f"dead letter {key!r} changed while replaying: try again") from None
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"replay of {key!r} not done: {exc}") from exc


def _replay(
    pipe: Any,
    publisher: Publisher,
    dead_letters: DeadLetters,
    prefix: str,
    key: str,
    resolve: Resolve | None,
) -> Published:
    letter = dead_letters.get(key)
    if letter is None:
        raise ReplayError(f"no dead letter {key!r}: list them with `dead-letters list`")
    if resolve and not letter.step:
        raise ReplayError(f"dead letter {key!r} stopped at no step: replay it without --resolve")
    if letter.reason == Reason.BUSINESS_KEY_CONFLICT and resolve != "applied":
        # Sent again as it is, it would conflict again, or, once the other claim has expired
        # or been given back, grant its full amount on top of the other report's.
        business = letter.readings.get("business_key")
        raise ReplayError(
            f"dead letter {key!r} conflicts with another report of {business}: settle the "
            "difference by hand, then purge it, or replay it with --resolve applied"
        )
    event = parse_event(letter.event)  # an invalid event cannot be replayed; send a fixed one
    message = build_message(event, publisher.queue_name)
    ledger = keys.ledger(prefix, key)
    pipe.multi()
    pipe.hdel(ledger, OUTCOME_FIELD)
    if resolve == "applied" and letter.step:
        now = int(time.time() * 1000)
        record = StepRecord(StepState.DONE, "operator", now, result={"resolved_by": "operator"})
        pipe.hset(ledger, letter.step, record.encode())
    elif resolve == "not_applied" and letter.step:
        pipe.hdel(ledger, letter.step)
    dead_letters.remove_in(pipe, letter)
    publisher.add_to(pipe, [message])
    pipe.execute()
    return Published(key=event.key, event_id=event.id, message_id=message.message_id)
