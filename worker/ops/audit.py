"""The audit trail: every operator action (replay, purge, resolve, import, ...) with who, when,
the filter, the ids and the result, in a capped Redis stream, plus one INFO log line each.

Who: the name the caller passes (`--operator`, the console's user), else the OS user. The stream
`{p}:ops:audit` keeps about `AUDIT_MAXLEN` entries (approximate trimming, as Redis does best).
"""

from __future__ import annotations

import getpass
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from worker import keys
from worker.log import get_logger
from worker.ops.filters import rfc3339

AUDIT_MAXLEN = 10_000
IDS_KEPT = 1000  # ids written per entry; `count` says how many there were
log = get_logger(__name__)
_LOGGED = {"actions": True}  # off in the CLI: its own output says what it did


def log_actions(enabled: bool) -> None:
    """Whether `record` also logs each action (the worker and console: yes; a CLI command
    prints the result itself, and a log line on stderr would land in the middle of it)."""
    _LOGGED["actions"] = enabled


def operator_name(given: str | None = None) -> str:
    """The operator's name: as given, else the OS user (else "unknown")."""
    if given and given.strip():
        return given.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass(frozen=True)
class AuditEntry:
    """One operator action."""

    action: str  # replay, purge, resolve, import, cancel, ...
    operator: str
    at_ms: int
    filter: dict[str, Any] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    count: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    entry_id: str | None = None

    @property
    def at(self) -> str | None:
        return rfc3339(self.at_ms)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at}

    def fields(self) -> dict[str, str]:
        return {
            "action": self.action,
            "operator": self.operator,
            "at_ms": str(self.at_ms),
            "filter": json.dumps(self.filter),
            "ids": json.dumps(self.ids[:IDS_KEPT]),
            "count": str(self.count),
            "result": json.dumps(self.result, default=str),
            "job_id": self.job_id or "",
        }


def record(
    client: redis.Redis | Any,
    prefix: str,
    action: str,
    operator: str,
    *,
    filter: dict[str, Any] | None = None,
    ids: list[str] | None = None,
    result: dict[str, Any] | None = None,
    job_id: str | None = None,
) -> AuditEntry:
    """Append an action to the audit stream (`client` may be a pipeline) and log it."""
    entry = AuditEntry(
        action=action,
        operator=operator,
        at_ms=int(time.time() * 1000),
        filter=filter or {},
        ids=list(ids or []),
        count=len(ids or []),
        result=result or {},
        job_id=job_id,
    )
    client.xadd(keys.audit(prefix), entry.fields(), maxlen=AUDIT_MAXLEN, approximate=True)  # type: ignore[arg-type]
    if not _LOGGED["actions"]:
        return entry
    log.info(
        "ops.action",
        action=action,
        operator=operator,
        filter=entry.filter,
        count=entry.count,
        result=entry.result,
        job_id=job_id,
    )
    return entry


def list_audit(
    client: redis.Redis, prefix: str, *, since_ms: int | None = None, limit: int | None = 100
) -> list[AuditEntry]:
    """Audit entries newest first, since `since_ms` if given."""
    low = f"{since_ms}-0" if since_ms is not None else "-"
    rows: Any = client.xrevrange(keys.audit(prefix), "+", low, count=limit)
    return [_decode(entry_id, fields) for entry_id, fields in rows]


def _decode(entry_id: Any, raw: dict[Any, Any]) -> AuditEntry:
    f = {_text(k): _text(v) for k, v in raw.items()}
    return AuditEntry(
        action=f.get("action", ""),
        operator=f.get("operator", ""),
        at_ms=int(f.get("at_ms", "0")),
        filter=json.loads(f.get("filter") or "{}"),
        ids=json.loads(f.get("ids") or "[]"),
        count=int(f.get("count", "0")),
        result=json.loads(f.get("result") or "{}"),
        job_id=f.get("job_id") or None,
        entry_id=_text(entry_id),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
