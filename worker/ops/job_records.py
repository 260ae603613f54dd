"""Replay and purge jobs as records in Redis: what `dead-letters jobs`, the console and a second
operator read, and how a running job is asked to stop. `worker.ops.jobs` runs them."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from worker import keys
from worker.ops import audit
from worker.ops.filters import rfc3339

JOB_TTL_S = 30 * 86_400
STALE_MS = 60_000  # a running job not updated for this long has lost its process


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
        pipe.hgetall(keys.ops_job(prefix, as_text(job_id)))
    return [_decode(raw) for raw in pipe.execute() if raw]


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
    )


def now_ms() -> int:
    """Now, in Unix milliseconds."""
    return int(time.time() * 1000)


def as_text(value: Any) -> str:
    """A Redis reply value as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
