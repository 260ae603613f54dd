"""Replay one dead letter: put its event back on the queue, atomically with the ledger cleanup.

The ledger keeps the steps the event already completed, so a replay resumes at the first step
not done; nothing is applied twice. For an `ambiguous_outcome`, the operator who has checked the
subaccount can say what happened to the unresolved step (`resolve="applied"` or "not_applied").
A `business_key_conflict` is replayed only as settled (`resolve="applied"`). This is a job of
one (`worker.ops.jobs`): planned, claimed, recorded and audited like a bulk replay, so it never
conflicts with other replays or with the worker writing new dead letters.
"""

from __future__ import annotations

import redis

from handlers import Context
from worker.errors import SubaccountWorkerError
from worker.ops.audit import operator_name
from worker.ops.dead_letters import DeadLetters
from worker.ops.jobs import Runner
from worker.ops.plans import Resolve, plan, select
from worker.pipeline.publish import Published, Publisher


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
    operator: str | None = None,
    ctx: Context | None = None,
) -> Published:
    """Re-enqueue dead letter `key`, removing it in the same transaction; ReplayError says why
    not (no such dead letter, refused without a resolution, or another replay took it)."""
    del dead_letters  # kept for callers; the job removes through its own `DeadLetters`
    selection = select(client, prefix, ids=[key])
    if not selection.records:
        raise ReplayError(f"no dead letter {key!r}: list them with `dead-letters list`")
    the_plan = plan(client, prefix, selection, action="replay", resolve=resolve, ctx=ctx)
    (item,) = the_plan.items
    if item.refused:
        raise ReplayError(f"dead letter {key!r} not replayed: {item.refused}")
    result = Runner(client, prefix, publisher).run(the_plan, operator=operator_name(operator))
    if key not in result.message_ids:
        why = result.skipped[0]["why"] if result.skipped else "not replayed"
        raise ReplayError(f"dead letter {key!r}: {why}")
    return Published(key=key, event_id=item.event_id, message_id=result.message_ids[key])
