"""Replay and purge jobs: a plan carried out in batches, recorded in Redis while it runs.

A job acts on exactly the items of its plan (`worker.ops.plans`): each item carries the digest
of the record it was planned from, and a dead letter gone or changed since (replayed by another
job, re-dead-lettered) is skipped and reported, never acted on. Nothing watches the whole
dead-letter hash, so concurrent jobs and the worker writing new dead letters never make a job
fail; the worker only ever adds dead letters.

- Replay: one Lua call per batch (`_REPLAY`) checks, for each dead letter, that it still holds
  the planned record (`redis.sha1hex`) and that no purge has claimed it, then moves it
  atomically: removes it (record, time index, reason count, the operators' index entries, as
  `DeadLetters.remove_in` and `DeadLetterIndex.remove_in` do), clears the ledger's ending (and
  applies `--resolve`), enqueues its message in Dramatiq's layout (as `Publisher.add_to` does),
  counts the replay and pushes the operator's timeline entries. One round trip per batch.
- Purge: claims each dead letter (`SET NX` on `{p}:dead:claim:{id}`, a short lease) and reads
  it, then one MULTI/EXEC removes the unchanged ones through `DeadLetters.remove_in` (which
  releases what a dead letter held) and drops the claims. Two round trips per batch.

The job record (`{p}:ops:job:{id}`, listed in `{p}:ops:jobs`) holds the filter, ids, operator,
times, counts and a cancel flag that the runner reads at each batch: a second operator (or the
console) sees progress and can cancel. The last `JOBS_KEPT` jobs are kept, each for 30 days.
A replay's re-queued events go to the job's pending set, followed to their end by
`job_records.track`. The audit gets an entry when the job starts (before it acts), one when its
batches end and one when its replayed events have all ended.
"""

from __future__ import annotations

import gc
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from worker import keys
from worker.errors import BrokerUnavailable
from worker.ops import audit
from worker.ops.dead_letters import DeadLetters
from worker.ops.index import DeadLetterIndex
from worker.ops.job_records import (
    JOB_TTL_S,
    Job,
    as_text,
    get_job,
    now_ms,
    pending_key,
    track,
)
from worker.ops.plans import ItemPlan, Plan, digest
from worker.pipeline import publish
from worker.pipeline.ledger import StepRecord, StepState
from worker.pipeline.outcomes import DeadLetter
from worker.pipeline.publish import Publisher, build_message

REPLAY_OPTION: str = getattr(publish, "REPLAY_OPTION", "replay")
CLAIM_MS = 60_000
BATCH = 500
JOBS_KEPT = 200
Progress = Callable[[int, int], None]  # (done + skipped so far, planned)
BatchResult = tuple[dict[str, str], list[dict[str, str]]]  # (moved id → message id, skipped)

# One batch of planned dead letters replayed atomically: `worker/ops/lua/replay.lua`.
_REPLAY = resources.files("worker.ops").joinpath("lua", "replay.lua").read_text()
_WHY = {
    "gone": "gone since the plan (replayed or purged meanwhile)",
    "changed": "changed since the plan: plan again",
    "busy": "another job is acting on it",
}


@dataclass(frozen=True)
class JobResult:
    """What a job did. `to_json` is the pinned `dead-letters replay --json` shape."""

    job: Job
    done: list[str]
    skipped: list[dict[str, str]]
    refused: list[dict[str, str]]
    missing: list[str] = field(default_factory=list)
    message_ids: dict[str, str] = field(default_factory=dict)

    @property
    def cancelled(self) -> bool:
        return self.job.state == "cancelled"

    def to_json(self) -> dict[str, Any]:
        verb = "replayed" if self.job.action == "replay" else "purged"
        return {
            "job_id": self.job.id,
            "planned": self.job.planned,
            verb: len(self.done),
            "refused": self.refused,
            "skipped": self.skipped
            + [{"id": i, "why": "no such dead letter"} for i in self.missing],
            "cancelled": self.cancelled,
            "state": self.job.state,
            "outcomes": self.job.breakdown(),
        }


@dataclass
class Runner:
    """Carries out plans; one per command or console request."""

    client: redis.Redis
    prefix: str
    publisher: Publisher | None = None  # needed for replays
    timeline_maxlen: int = 200
    batch: int = BATCH

    def __post_init__(self) -> None:
        self._replay_script = self.client.register_script(_REPLAY)

    def run(
        self,
        plan: Plan,
        *,
        operator: str,
        rate: float | None = None,
        stop: threading.Event | None = None,
        progress: Progress | None = None,
    ) -> JobResult:
        """Carry out `plan` as a recorded job; stops between batches when `stop` is set or the
        job is cancelled. The audit gets `<action>_started` first and `<action>` with the result."""
        if plan.action == "replay" and self.publisher is None:
            raise ValueError("a replay job needs a publisher")
        stop = stop or threading.Event()
        items = plan.planned
        job_id = self._start(plan, operator, rate)
        moved: dict[str, str] = {}
        skipped: list[dict[str, str]] = []
        size = max(1, min(self.batch, int(rate))) if rate else self.batch
        began = time.monotonic()
        cancelled = False

        def collect(done: Future[BatchResult]) -> None:
            moved.update(done.result()[0])
            skipped.extend(done.result()[1])
            if progress:
                progress(len(moved) + len(skipped), len(items))

        # Batch k's Redis call runs in a thread while batch k+1's arguments are built.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ops-job") as pool:
            pending: Future[BatchResult] | None = None
            for start in range(0, len(items), size):
                call = (
                    None
                    if stop.is_set()
                    else self._batch(job_id, plan, items[start : start + size], operator)
                )
                if pending is not None:
                    collect(pending)
                if call is None:
                    cancelled = True
                    break
                pending = pool.submit(call)
                if rate:
                    stop.wait(max(0.0, began + (start + size) / rate - time.monotonic()))
            else:
                if pending is not None:
                    collect(pending)
        job = self._finish(job_id, cancelled)
        refused = [{"id": i.id, "why": i.refused or ""} for i in plan.refused]
        result = JobResult(job, list(moved), skipped, refused, plan.missing, moved)
        summary = result.to_json()
        summary.update(refused=len(summary["refused"]), skipped=len(summary["skipped"]))
        audit.record(
            self.client,
            self.prefix,
            plan.action,
            operator,
            filter=plan.filter,
            ids=list(moved),
            result=summary,
            job_id=job_id,
        )
        return result

    # --- the job record -----------------------------------------------------------------------

    def _start(self, plan: Plan, operator: str, rate: float | None) -> str:
        job_id = time.strftime("%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)
        now = now_ms()
        fields = {
            "id": job_id,
            "action": plan.action,
            "operator": operator,
            "filter": json.dumps(plan.filter),
            "ids": json.dumps([item.id for item in plan.planned]),
            "resolve": plan.resolve or "",
            "rate": "" if rate is None else str(rate),
            "started_ms": now,
            "updated_ms": now,
            "planned": len(plan.planned),
            "done": 0,
            "skipped": 0,
            "refused": len(plan.refused),
            "state": "running",
        }
        key = keys.ops_job(self.prefix, job_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        pipe.expire(key, JOB_TTL_S)
        pipe.zadd(keys.ops_jobs(self.prefix), {job_id: now})
        pipe.zremrangebyrank(keys.ops_jobs(self.prefix), 0, -JOBS_KEPT - 1)
        _execute(pipe, "record the job")
        # Written before anything is acted on: a job killed mid-way shows in the audit as
        # started (and in `jobs` as stale), not as nothing.
        audit.record(
            self.client,
            self.prefix,
            f"{plan.action}_started",
            operator,
            filter=plan.filter,
            ids=[item.id for item in plan.planned],
            result={"planned": len(plan.planned), "refused": len(plan.refused)},
            job_id=job_id,
        )
        return job_id

    def _finish(self, job_id: str, cancelled: bool) -> Job:
        """Record the end of the job's batches. A replay that re-queued events is `settling`
        until each has ended (`track`); anything else is finished (or cancelled) now."""
        key = keys.ops_job(self.prefix, job_id)
        now = now_ms()
        pending = int(self.client.hget(key, "pending") or 0)  # type: ignore[arg-type,unused-ignore]
        fields: dict[FieldT, EncodableT] = {"updated_ms": now, "replayed_ms": now}
        if cancelled:
            fields.update(state="cancelled", finished_ms=now)
        elif pending:
            fields.update(state="settling")
        else:
            fields.update(state="finished", finished_ms=now)
        self.client.hset(key, mapping=fields)
        if pending:
            track(self.client, self.prefix, job_id, now=True)
        job = get_job(self.client, self.prefix, job_id)
        assert job is not None  # written just above
        return job

    # --- one batch --------------------------------------------------------------------------

    def _batch(
        self, job_id: str, plan: Plan, items: list[ItemPlan], operator: str
    ) -> Callable[[], BatchResult] | None:
        """The call that acts on `items` (returning moved id → message id, and the skipped),
        its arguments built; None if the job was cancelled."""
        cancel = self.client.hget(keys.ops_job(self.prefix, job_id), "cancel")
        if cancel:
            return None
        if plan.action == "replay":
            return self._replay_batch(job_id, plan, items, operator)
        return lambda: self._purge_batch(job_id, items, operator)

    def _replay_batch(
        self, job_id: str, plan: Plan, items: list[ItemPlan], operator: str
    ) -> Callable[[], BatchResult]:
        assert self.publisher is not None
        queue = keys.dramatiq_queue(self.prefix, self.publisher.queue_name)
        names = [
            keys.dead_letters(self.prefix),
            keys.dead_letter_index(self.prefix),
            keys.dead_letter_counts(self.prefix),
            keys.dead_letter_ix_of(self.prefix),
            keys.replays(self.prefix),
            queue,
            f"{queue}.msgs",
            keys.ops_job(self.prefix, job_id),
            pending_key(self.prefix, job_id),
        ]
        args: list[Any] = [
            self.timeline_maxlen,
            keys.dead_letter_ix(self.prefix, "", "").removesuffix(":"),
            keys.dead_letter_claim(self.prefix, ""),
            now_ms(),
            *self.publisher.keyspace.lua_args(),
            JOB_TTL_S,
        ]
        message_ids: list[str] = []
        for item in items:
            part, message_id = self._replay_args(job_id, plan, item, operator)
            args += part
            message_ids.append(message_id)
        return lambda: self._replay_call(names, args, items, message_ids)

    def _replay_call(
        self, names: list[str], args: list[Any], items: list[ItemPlan], message_ids: list[str]
    ) -> BatchResult:
        try:
            replies = self._replay_script(keys=names, args=args)
        except redis.RedisError as exc:
            raise BrokerUnavailable(
                f"could not replay on Redis ({type(exc).__name__}): retry"
            ) from exc
        moved: dict[str, str] = {}
        skipped: list[dict[str, str]] = []
        for item, message_id, reply in zip(items, message_ids, replies, strict=True):
            status = as_text(reply)
            if status == "ok":
                moved[item.id] = message_id
            else:
                skipped.append({"id": item.id, "why": _WHY[status]})
        return moved, skipped

    def _replay_args(
        self, job_id: str, plan: Plan, item: ItemPlan, operator: str
    ) -> tuple[list[Any], str]:
        """One dead letter's `_REPLAY` arguments, and its message id."""
        assert self.publisher is not None
        event = plan.events.get(item.id)
        if event is None:  # planned elsewhere (the plan's parsed events were not kept)
            raise ValueError(f"plan has no event for {item.id}: plan it again")
        message = build_message(event, self.publisher.queue_name)
        message.options[REPLAY_OPTION] = item.replay
        redis_id = message.options["redis_message_id"]
        now = now_ms()
        entry = self._entry("replayed", item, operator, job_id, now)
        resolved, resolved_record = "", ""
        if plan.resolve:
            resolved = self._entry("resolved", item, operator, job_id, now, resolve=plan.resolve)
            if plan.resolve == "applied":
                record = StepRecord(
                    StepState.DONE, "operator", now, result={"resolved_by": "operator"}
                )
                resolved_record = record.encode()
        args = [
            item.id,
            item.digest,
            item.reason,
            keys.ledger(self.prefix, item.id),
            keys.timeline(self.prefix, item.client_id),
            entry,
            redis_id,
            message.encode(),
            item.replay,
            plan.resolve or "",
            item.step or "",
            resolved_record,
            resolved,
        ]
        return args, message.message_id

    def _purge_batch(self, job_id: str, items: list[ItemPlan], operator: str) -> BatchResult:
        pipe = self.client.pipeline(transaction=False)
        for item in items:
            pipe.set(keys.dead_letter_claim(self.prefix, item.id), job_id, nx=True, px=CLAIM_MS)
        pipe.hmget(keys.dead_letters(self.prefix), [item.id for item in items])
        replies = _execute(pipe, "claim the dead letters")
        claimed, records = replies[: len(items)], replies[-1]
        act: list[tuple[ItemPlan, DeadLetter]] = []
        skipped: list[dict[str, str]] = []
        for item, got, raw in zip(items, claimed, records, strict=True):
            why = _skip_reason(item, bool(got), raw)
            if why:
                skipped.append({"id": item.id, "why": why})
            else:
                act.append((item, DeadLetter.decode(raw)))
        tx = self.client.pipeline(transaction=True)
        dead_letters = DeadLetters(self.client, self.prefix)
        index = DeadLetterIndex(self.client, self.prefix)
        now = now_ms()
        for item, letter in act:
            dead_letters.remove_in(tx, letter)
            index.remove_in(tx, letter.key, letter)
            name = keys.timeline(self.prefix, item.client_id)
            tx.lpush(name, self._entry("purged", item, operator, job_id, now))
            tx.ltrim(name, 0, self.timeline_maxlen - 1)
        for item, got in zip(items, claimed, strict=True):
            if got:
                tx.delete(keys.dead_letter_claim(self.prefix, item.id))
        job_key = keys.ops_job(self.prefix, job_id)
        tx.hincrby(job_key, "done", len(act))
        tx.hincrby(job_key, "skipped", len(skipped))
        tx.hset(job_key, "updated_ms", now)
        _execute(tx, "purge the dead letters")
        return {item.id: "" for item, _ in act}, skipped

    @staticmethod
    def _entry(
        kind: str, item: ItemPlan, operator: str, job_id: str, now: int, **extra: Any
    ) -> str:
        """An operator's timeline entry (the shared contract of TEAM.md), as JSON."""
        entry = {
            "kind": kind,
            "at_ms": now,
            "event_id": item.event_id,
            "key": item.id,
            "event_type": item.type,
            "reason": item.reason,
            "operator": operator,
            "job_id": job_id,
            **extra,
        }
        return json.dumps(entry, separators=(",", ":"))


def _skip_reason(item: ItemPlan, claimed: bool, raw: Any) -> str | None:
    if not claimed:
        return _WHY["busy"]
    if raw is None:
        return _WHY["gone"]
    if digest(raw) != item.digest:
        return _WHY["changed"]
    return None


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a bulk plan or job: tens of thousands of
    long-lived records would otherwise be rescanned by every full collection (half the CPU of
    planning 10,000 replays). For short-lived processes (the CLI); nothing here makes cycles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _execute(pipe: Any, what: str) -> list[Any]:
    try:
        return list(pipe.execute())
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"could not {what} on Redis ({type(exc).__name__}): retry") from exc
