"""Replay and purge jobs as records in Redis: what `dead-letters jobs`, the console and a second
operator read, and how a running job is asked to stop. `worker.ops.jobs` runs them.

A replay job follows each event it re-queued to its end (`track`, `lua/track.lua`): applied,
duplicate, superseded, ignored, dead-lettered again, or still pending (queued or retrying). Its
state goes running → settling (every batch done, events still pending) → finished (every event
settled); a cancelled job keeps following what it did replay. Reading a job tracks it first, at
most once a `TRACK_GAP_MS` whoever reads, so a page or `--wait` sees the events as they end.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoPermissionError

from worker import keys
from worker.ops import audit
from worker.ops.filters import rfc3339

JOB_TTL_S = 30 * 86_400
STALE_MS = 60_000  # a running job not updated for this long has lost its process
TRACK_GAP_MS = 500  # a job's events are looked at no more often than this, whoever reads
TRACK_SAMPLE = 2_000  # pending events looked at per look (bounds one look's cost)
AGAIN_SHOWN = 1_000  # the dead-lettered-again ids read back for their reasons
SETTLED = ("applied", "duplicate", "superseded", "ignored", "dead_lettered")
_TRACK = resources.files("worker.ops").joinpath("lua", "track.lua").read_text()


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
    state: str  # running, settling, finished, cancelled, stale (its process is gone)
    # What became of the replayed events: outcome → count ("dead_lettered": dead-lettered
    # again), and how many have not ended yet (queued or retrying).
    outcomes: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    replayed_ms: int | None = None  # when its last batch was done (a replay's)
    again_reasons: dict[str, int] = field(default_factory=dict)  # of those dead-lettered again

    @property
    def settled(self) -> bool:
        """Every event it acted on has ended (always, for a purge)."""
        return self.pending == 0 and self.state in ("finished", "cancelled", "stale")

    @property
    def failed_again(self) -> int:
        return self.outcomes.get("dead_lettered", 0)

    def breakdown(self) -> dict[str, int]:
        """Every outcome (0 when none) plus `dead_lettered_again` and `pending`: the pinned
        shape of a job's `outcomes` in `--json` and the console's API."""
        out = {name: self.outcomes.get(name, 0) for name in SETTLED if name != "dead_lettered"}
        out.update(
            {name: n for name, n in self.outcomes.items() if name not in SETTLED}
        )  # an outcome this code does not know yet, shown rather than lost
        out["dead_lettered_again"] = self.failed_again
        out["pending"] = self.pending
        return out

    def to_json(self, with_ids: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_ids:
            out.pop("ids")
        out["outcomes"] = self.breakdown()
        out["settled"] = self.settled
        out["started_at"] = rfc3339(self.started_ms)
        out["finished_at"] = rfc3339(self.finished_ms)
        out["replayed_at"] = rfc3339(self.replayed_ms)
        return out


def cancel_job(client: redis.Redis, prefix: str, job_id: str, operator: str) -> Job | None:
    """Ask a running job to stop at its next batch; None if there is no such job."""
    key = keys.ops_job(prefix, job_id)
    if not client.exists(key):
        return None
    client.hset(key, "cancel", operator)
    audit.record(client, prefix, "cancel", operator, job_id=job_id)
    return get_job(client, prefix, job_id)


def get_job(client: redis.Redis, prefix: str, job_id: str) -> Job | None:
    """The job as recorded, its replayed events tracked first; None if there is no such job."""
    raw: Any = client.hgetall(keys.ops_job(prefix, job_id))
    if raw and _following(raw) and _track_if_allowed(client, prefix, job_id):
        raw = client.hgetall(keys.ops_job(prefix, job_id))
    return _with_reasons(client, prefix, _decode(raw)) if raw else None


def list_jobs(client: redis.Redis, prefix: str, limit: int | None = 20) -> list[Job]:
    """Jobs newest first (those still following their events tracked first)."""
    end = -1 if limit is None else limit - 1
    ids = [as_text(i) for i in client.zrevrange(keys.ops_jobs(prefix), 0, end)]
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(keys.ops_job(prefix, job_id))
    raws = pipe.execute()
    following = [job_id for job_id, raw in zip(ids, raws, strict=True) if raw and _following(raw)]
    if [job_id for job_id in following if _track_if_allowed(client, prefix, job_id)]:
        return [job for job_id in ids if (job := get_job(client, prefix, job_id)) is not None]
    return [_with_reasons(client, prefix, _decode(raw)) for raw in raws if raw]


def _track_if_allowed(client: redis.Redis, prefix: str, job_id: str) -> bool:
    """Track the job unless this user may not write (a read-only viewer: the job is shown as
    the last writer tracked it). True if it was tracked."""
    try:
        track(client, prefix, job_id)
    except NoPermissionError:
        return False
    return True


def track(client: redis.Redis, prefix: str, job_id: str, *, now: bool = False) -> bool:
    """Look at the job's pending events (`lua/track.lua`): count those that ended, finish the
    job once all have. `now` skips the `TRACK_GAP_MS` spacing. True for the one call that
    finished the job, which writes the audit's `<action>_settled` entry."""
    job_key = keys.ops_job(prefix, job_id)
    script = client.register_script(_TRACK)
    args: list[Any] = [
        keys.ledger(prefix, ""),
        now_ms(),
        TRACK_SAMPLE,
        0 if now else TRACK_GAP_MS,
        JOB_TTL_S,
    ]
    finished = bool(script(keys=[job_key, pending_key(prefix, job_id), again_key(prefix, job_id)],
                           args=args))  # fmt: skip
    if finished:
        job = get_job(client, prefix, job_id)
        if job is not None:
            audit.record(client, prefix, f"{job.action}_settled", job.operator,
                         result=job.breakdown() | {"again_reasons": job.again_reasons},
                         job_id=job_id)  # fmt: skip
    return finished


def pending_key(prefix: str, job_id: str) -> str:
    """The set of a replay job's events that have not ended yet."""
    return keys.ops_job(prefix, job_id) + ":pending"


def again_key(prefix: str, job_id: str) -> str:
    """The set of a replay job's events that were dead-lettered again."""
    return keys.ops_job(prefix, job_id) + ":again"


def _following(raw: dict[Any, Any]) -> bool:
    """Still has events to follow: some pending, or settling (about to finish)."""
    pending = raw.get(b"pending", raw.get("pending"))
    state = raw.get(b"state", raw.get("state"))
    return (bool(pending) and as_text(pending) != "0") or as_text(state or "") == "settling"


def _with_reasons(client: redis.Redis, prefix: str, job: Job) -> Job:
    """The job with the reasons its dead-lettered-again events carry now."""
    if not job.failed_again:
        return job
    ids: Any = client.srandmember(again_key(prefix, job.id), AGAIN_SHOWN)
    if not ids:
        return job
    raws: Any = client.hmget(keys.dead_letters(prefix), ids)
    reasons: dict[str, int] = {}
    for raw in raws:
        if raw:
            reason = str(json.loads(raw).get("reason", "?"))
            reasons[reason] = reasons.get(reason, 0) + 1
    return replace(job, again_reasons=reasons)


def running_jobs(client: redis.Redis, prefix: str) -> list[Job]:
    return [job for job in list_jobs(client, prefix, limit=50) if job.state == "running"]


def _decode(raw: dict[Any, Any]) -> Job:
    f = {as_text(k): as_text(v) for k, v in raw.items()}
    updated = int(f.get("updated_ms") or 0)
    state = f.get("state", "running")
    if state == "running" and now_ms() - updated > STALE_MS:
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
        outcomes={
            name.removeprefix("out_"): int(value)
            for name, value in f.items()
            if name.startswith("out_")
        },
        pending=int(f.get("pending") or 0),
        replayed_ms=int(f["replayed_ms"]) if f.get("replayed_ms") else None,
    )


def now_ms() -> int:
    """Now, in Unix milliseconds."""
    return int(time.time() * 1000)


def as_text(value: Any) -> str:
    """A Redis reply value as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
