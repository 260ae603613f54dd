"""The effect journal: every state-changing API call as answered, so tests can see what happened.

Reads are not journaled. Password fields never enter the journal: they are replaced by "***".
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Fault = Literal["error", "rate_limited", "hang", "drop", "fail_after_commit", "late"]
SurfaceName = Literal["v5", "v6"]
# What the journal says made a change: an API surface, or the sandbox itself (a top-up out of band)
JournalSurface = Literal["v5", "v6", "sandbox"]
MASK = "***"


class JournalEntry(BaseModel):
    """One state-changing call: what was asked, what was answered, and whether state changed."""

    model_config = ConfigDict(frozen=True)

    seq: int
    time: str
    surface: JournalSurface
    operation: str
    username: str | None
    status: int | None
    applied: bool
    amount: int | None
    args: dict[str, Any]
    fault: Fault | None
    result: dict[str, Any] | str | None
    detail: str | None = None
    received: str | None = None  # when the request arrived (None for changes out of band)


def mask_secrets(args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments with every password-like field (any key containing "pass") as "***"."""
    return {key: MASK if "pass" in key.lower() else value for key, value in args.items()}


def now_iso() -> str:
    """The journal's timestamps: UTC, to the millisecond."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class Journal:
    """An append-only, thread-safe list of entries numbered from 1."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[JournalEntry] = []

    def append(self, **fields: Any) -> JournalEntry:
        """Record one call; `seq` and `time` are assigned here, `args` are masked here."""
        with self._lock:
            fields["args"] = mask_secrets(fields.get("args", {}))
            entry = JournalEntry(
                seq=len(self._entries) + 1,
                time=now_iso(),
                **fields,
            )
            self._entries.append(entry)
            return entry

    def entries(
        self,
        operation: str | None = None,
        username: str | None = None,
        since_seq: int | None = None,
    ) -> list[JournalEntry]:
        """Entries in order, optionally only one operation, one username, or after `since_seq`."""
        with self._lock:
            return [
                entry
                for entry in self._entries
                if (operation is None or entry.operation == operation)
                and (username is None or entry.username == username)
                and (since_seq is None or entry.seq > since_seq)
            ]

    def clear(self) -> None:
        """Forget every entry; numbering starts again at 1."""
        with self._lock:
            self._entries = []
