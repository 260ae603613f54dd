"""Replay and purge jobs: a plan carried out in batches, recorded in Redis while it runs.

A job acts on exactly the items of its plan (`worker.ops.plans`). Each batch costs two round
trips: (1) claim each dead letter (`SET NX` on `{p}:dead:claim:{id}`, a short lease) and read
the records; (2) one MULTI/EXEC that, for each dead letter still holding the record it was planned
from, removes it (record, indexes, counts: `DeadLetters.remove_in`), re-enqueues its event
(replay) and writes the operator's timeline entry, then drops the claims. Only operators remove
dead letters, and every removal claims first, so two jobs (or a job and a single replay) never
act on one dead letter twice; the worker only adds dead letters, so nothing it writes makes a
replay fail. A dead letter gone or changed since the plan is skipped and reported, never acted on.

The job record (`{p}:ops:job:{id}`, listed in `{p}:ops:jobs`) holds the filter, ids, operator,
times, counts and a cancel flag that the runner reads at each batch: a second operator (or the
console) sees progress and can cancel. The last `JOBS_KEPT` jobs are kept, each for 30 days.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from handlers.events import parse_event
from worker import keys
from worker.errors import BrokerUnavailable
from worker.ops import audit
from worker.ops.dead_letters import DeadLetters
from worker.ops.filters import rfc3339
from worker.ops.index import DeadLetterIndex
from worker.ops.plans import ItemPlan, Plan, Resolve, digest
from worker.pipeline import publish
from worker.pipeline.ledger import OUTCOME_FIELD, StepRecord, StepState
from worker.pipeline.outcomes import DeadLetter
from worker.pipeline.publish import Publisher, build_message

REPLAY_OPTION: str = getattr(publish, "REPLAY_OPTION", "replay")
CLAIM_MS = 60_000
BATCH = 500
JOBS_KEPT = 200
JOB_TTL_S = 30 * 86_400
STALE_MS = 60_000  # a running job not updated for this long has lost its process
Progress = Callable[[int, int], None]  # (done + skipped so far, planned)


@dataclass(frozen=True)
class Job:
    """A replay or purge job as recorded in Redis."""

    id: str
    action: str
    operator: str
    filter: dict[str, Any]
    ids: list[str]
    resolve: str | None
    rate: float | None
    started_ms: int
    updated_ms: int
    finished_ms: int | None
    planned: int
    done: int
    skipped: int
    refused: int
    cancel_requested: bool
    state: str  # running, finished, cancelled, stale (its process is gone)

    def to_json(self, with_ids: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_ids:
            out.pop("ids")
        out["started_at"] = rfc3339(self.started_ms)
        out["finished_at"] = rfc3339(self.finished_ms)
        return out


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
        }


@dataclass
class Runner:
    """Carries out plans; one per command or console request."""

    client: redis.Redis
    prefix: str
    publisher: Publisher | None = None  # needed for replays
    timeline_maxlen: int = 200
    batch: int = BATCH

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
        job is cancelled. The audit gets one entry with the result."""
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
        for start in range(0, len(items), size):
            if stop.is_set():
                cancelled = True
                break
            outcome = self._batch(job_id, plan, items[start : start + size], operator)
            if outcome is None:
                cancelled = True
                break
            moved.update(outcome[0])
            skipped.extend(outcome[1])
            if progress:
                progress(len(moved) + len(skipped), len(items))
            if rate:
                stop.wait(max(0.0, began + (start + size) / rate - time.monotonic()))
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
        now = _now_ms()
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
        return job_id

    def _finish(self, job_id: str, cancelled: bool) -> Job:
        key = keys.ops_job(self.prefix, job_id)
        now = _now_ms()
        state = "cancelled" if cancelled else "finished"
        self.client.hset(key, mapping={"finished_ms": now, "updated_ms": now, "state": state})
        job = get_job(self.client, self.prefix, job_id)
        assert job is not None  # written just above
        return job

    # --- one batch --------------------------------------------------------------------------

    def _batch(
        self, job_id: str, plan: Plan, items: list[ItemPlan], operator: str
    ) -> tuple[dict[str, str], list[dict[str, str]]] | None:
        """Claim, check and act on `items`; None when the job was cancelled."""
        pipe = self.client.pipeline(transaction=False)
        for item in items:
            pipe.set(keys.dead_letter_claim(self.prefix, item.id), job_id, nx=True, px=CLAIM_MS)
        pipe.hmget(keys.dead_letters(self.prefix), [item.id for item in items])
        pipe.hget(keys.ops_job(self.prefix, job_id), "cancel")
        replies = _execute(pipe, "claim the dead letters")
        claimed, records, cancel = replies[: len(items)], replies[-2], replies[-1]
        ours = [item.id for item, got in zip(items, claimed, strict=True) if got]
        if cancel:
            if ours:
                self.client.delete(*[keys.dead_letter_claim(self.prefix, i) for i in ours])
            return None
        act: list[tuple[ItemPlan, DeadLetter]] = []
        skipped: list[dict[str, str]] = []
        for item, got, raw in zip(items, claimed, records, strict=True):
            why = _skip_reason(item, bool(got), raw)
            if why:
                skipped.append({"id": item.id, "why": why})
            else:
                act.append((item, DeadLetter.decode(raw)))
        tx = self.client.pipeline(transaction=True)
        moved = {
            item.id: self._act(tx, job_id, plan, item, letter, operator) for item, letter in act
        }
        for claim_id in ours:
            tx.delete(keys.dead_letter_claim(self.prefix, claim_id))
        job_key = keys.ops_job(self.prefix, job_id)
        tx.hincrby(job_key, "done", len(moved))
        tx.hincrby(job_key, "skipped", len(skipped))
        tx.hset(job_key, "updated_ms", _now_ms())
        _execute(tx, f"{plan.action} the dead letters")
        return moved, skipped

    def _act(
        self, tx: Any, job_id: str, plan: Plan, item: ItemPlan, letter: DeadLetter, operator: str
    ) -> str:
        """Queue the writes of one replay or purge on `tx`; return the message id (or '')."""
        DeadLetters(self.client, self.prefix).remove_in(tx, letter)
        DeadLetterIndex(self.client, self.prefix).remove_in(tx, letter.key, letter)
        message_id = ""
        if plan.action == "replay":
            assert self.publisher is not None
            message = build_message(parse_event(letter.event), self.publisher.queue_name)
            message.options[REPLAY_OPTION] = item.replay
            _resolve_in(tx, keys.ledger(self.prefix, letter.key), letter, plan.resolve)
            self.publisher.add_to(tx, [message])
            tx.hset(keys.replays(self.prefix), letter.key, item.replay)
            message_id = message.message_id
            if plan.resolve:
                self._timeline(tx, "resolved", letter, operator, job_id, resolve=plan.resolve)
        kind = "replayed" if plan.action == "replay" else "purged"
        self._timeline(tx, kind, letter, operator, job_id)
        return message_id

    def _timeline(
        self, tx: Any, kind: str, letter: DeadLetter, operator: str, job_id: str, **extra: Any
    ) -> None:
        entry = {
            "kind": kind,
            "at_ms": _now_ms(),
            "event_id": str(letter.event.get("id", "")),
            "key": letter.key,
            "event_type": letter.event_type,
            "reason": letter.reason,
            "operator": operator,
            "job_id": job_id,
            **extra,
        }
        name = keys.timeline(self.prefix, letter.client_id)
        tx.lpush(name, json.dumps(entry, separators=(",", ":")))
        tx.ltrim(name, 0, self.timeline_maxlen - 1)


def _resolve_in(tx: Any, ledger: str, letter: DeadLetter, resolve: Resolve | None) -> None:
    """Forget how the event ended, and apply the operator's verdict on its unresolved step."""
    tx.hdel(ledger, OUTCOME_FIELD)
    if resolve == "applied" and letter.step:
        record = StepRecord(
            StepState.DONE, "operator", _now_ms(), result={"resolved_by": "operator"}
        )
        tx.hset(ledger, letter.step, record.encode())
    elif resolve == "not_applied" and letter.step:
        tx.hdel(ledger, letter.step)


def _skip_reason(item: ItemPlan, claimed: bool, raw: Any) -> str | None:
    if not claimed:
        return "another job is acting on it"
    if raw is None:
        return "gone since the plan (replayed or purged meanwhile)"
    if digest(raw) != item.digest:
        return "changed since the plan: plan again"
    return None


def cancel_job(client: redis.Redis, prefix: str, job_id: str, operator: str) -> Job | None:
    """Ask a running job to stop at its next batch; None if there is no such job."""
    key = keys.ops_job(prefix, job_id)
    if not client.exists(key):
        return None
    client.hset(key, "cancel", operator)
    audit.record(client, prefix, "cancel", operator, job_id=job_id)
    return get_job(client, prefix, job_id)


def get_job(client: redis.Redis, prefix: str, job_id: str) -> Job | None:
    raw: Any = client.hgetall(keys.ops_job(prefix, job_id))
    return _decode(raw) if raw else None


def list_jobs(client: redis.Redis, prefix: str, limit: int | None = 20) -> list[Job]:
    """Jobs newest first."""
    end = -1 if limit is None else limit - 1
    ids: Any = client.zrevrange(keys.ops_jobs(prefix), 0, end)
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(keys.ops_job(prefix, _text(job_id)))
    return [_decode(raw) for raw in pipe.execute() if raw]


def running_jobs(client: redis.Redis, prefix: str) -> list[Job]:
    return [job for job in list_jobs(client, prefix, limit=50) if job.state == "running"]


def _decode(raw: dict[Any, Any]) -> Job:
    f = {_text(k): _text(v) for k, v in raw.items()}
    updated = int(f.get("updated_ms") or 0)
    state = f.get("state", "running")
    if state == "running" and _now_ms() - updated > STALE_MS:
        state = "stale"
    return Job(
        id=f["id"],
        action=f.get("action", ""),
        operator=f.get("operator", ""),
        filter=json.loads(f.get("filter") or "{}"),
        ids=json.loads(f.get("ids") or "[]"),
        resolve=f.get("resolve") or None,
        rate=float(f["rate"]) if f.get("rate") else None,
        started_ms=int(f.get("started_ms") or 0),
        updated_ms=updated,
        finished_ms=int(f["finished_ms"]) if f.get("finished_ms") else None,
        planned=int(f.get("planned") or 0),
        done=int(f.get("done") or 0),
        skipped=int(f.get("skipped") or 0),
        refused=int(f.get("refused") or 0),
        cancel_requested=bool(f.get("cancel")),
        state=state,
    )


def _execute(pipe: Any, what: str) -> list[Any]:
    try:
        return list(pipe.execute())
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"could not {what} on Redis ({type(exc).__name__}): retry") from exc


def _now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
