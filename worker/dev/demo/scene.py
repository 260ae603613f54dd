"""What every chapter works with: the running system, the cast, and how to see what happened.

A chapter sends through the front doors (or acts as an operator), then waits for the outcome of
each delivery on the outcome stream and reads the API calls it caused from the sandbox journal.
It returns a `Chapter`: rows to print, and the checks the story's exit code depends on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from handlers import Context, username_for
from worker import keys
from worker.dev.demo.doors import Delivery, FrontDoors
from worker.dev.devservers import wait_until
from worker.ops.outcomes import decode_entry
from worker.sandbox.client import SandboxAdmin
from worker.settings import ApiSurface, Settings

WAIT_S = 30.0


@dataclass(frozen=True)
class Client:
    """A client of the story: its id at the CRM, its subaccount's username, starting credits."""

    client_id: str
    name: str
    email: str
    credits: int

    @property
    def username(self) -> str:
        return username_for(self.client_id)


@dataclass(frozen=True)
class Check:
    """One expectation of the story and whether it held."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Row:
    """One thing that happened: a delivery and its outcome, or an operator's action."""

    what: str
    door: str
    outcome: str
    why: str = ""


@dataclass
class Chapter:
    """A chapter as printed: what it shows, what happened, the API calls, the checks."""

    title: str
    intro: str
    rows: list[Row] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    extra: list[Any] = field(default_factory=list)  # rich renderables (tables of a service)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        """Record an expectation; return whether it held."""
        self.checks.append(Check(name, ok, detail))
        return ok


@dataclass(frozen=True)
class Mark:
    """A point in the story: the outcome stream's last id and the journal's last seq."""

    stream_id: str
    journal_seq: int


@dataclass
class Scene:
    """The running system as the chapters see it."""

    settings: Settings
    redis: redis.Redis
    admin: SandboxAdmin
    doors: FrontDoors
    cast: dict[str, Client]
    started: float = field(default_factory=time.time)
    # What the story expects by now, as the chapters go: grants per client (what, credits),
    # invoices waiting as dead letters (invoice -> client, credits), churned clients.
    grants: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    pending: dict[str, tuple[str, int]] = field(default_factory=dict)
    churned: set[str] = field(default_factory=set)
    servers: dict[str, str] = field(default_factory=dict)  # name -> URL, for the reader

    @property
    def prefix(self) -> str:
        return self.settings.key_prefix

    @property
    def context(self) -> Context:
        """What the handlers need to know of the API (as the CLI builds it from settings)."""
        return Context(needs_password=self.settings.api_surface == ApiSurface.V6)

    def at(self, seconds: float) -> float:
        """Business time: `seconds` into the story's last hour (events carry this time)."""
        return self.started - 3600 + seconds

    def expect_grant(self, client_id: str, credits: int, what: str) -> None:
        """Note that `credits` must have been granted to `client_id`, exactly once, for `what`."""
        self.grants.setdefault(client_id, []).append((what, credits))

    def mark(self) -> Mark:
        """Where the outcome stream and the journal are now."""
        last: Any = self.redis.xrevrange(keys.outcomes(self.prefix), count=1)
        stream_id = _text(last[0][0]) if last else "0-0"
        journal = self.admin.journal()
        return Mark(stream_id, journal[-1]["seq"] if journal else 0)

    def outcomes_since(self, mark: Mark) -> list[dict[str, Any]]:
        """Outcome records written after `mark`, oldest first."""
        entries: Any = self.redis.xrange(keys.outcomes(self.prefix), min=f"({mark.stream_id}")
        return [decode_entry(fields) for _id, fields in entries or []]

    def await_outcomes(self, mark: Mark, deliveries: Iterable[Delivery]) -> list[dict[str, Any]]:
        """The outcome of each delivery after `mark`, in delivery order (waits for all)."""
        wanted = list(deliveries)
        what = "the outcomes of " + ", ".join(d.label for d in wanted)
        return self.await_outcomes_of(mark, [d.key for d in wanted], what)

    def await_outcomes_of(
        self, mark: Mark, event_keys: list[str], what: str = "outcomes"
    ) -> list[dict[str, Any]]:
        """The outcome of each event key after `mark`, in order (a key twice: two outcomes)."""
        found: list[dict[str, Any]] = []

        def complete() -> bool:
            nonlocal found
            found = match(self.outcomes_since(mark), event_keys)
            return len(found) == len(event_keys)

        wait_until(complete, timeout_s=WAIT_S, what=what)
        return found

    def calls_since(self, mark: Mark) -> list[dict[str, Any]]:
        """State-changing API calls (the sandbox journal) after `mark`."""
        return self.admin.journal(since_seq=mark.journal_seq)

    def dead_letter_count(self) -> int:
        """How many dead letters wait for an operator."""
        return int(self.redis.hlen(keys.dead_letters(self.prefix)))

    def who(self, username: str | None) -> str:
        """The client id behind a username (the username itself if not of the cast)."""
        for client in self.cast.values():
            if client.username == username:
                return client.client_id
        return username or "-"


def match(records: list[dict[str, Any]], wanted_keys: list[str]) -> list[dict[str, Any]]:
    """For each wanted key in order, the next unused record with that key (stops at a gap)."""
    used: set[int] = set()
    found = []
    for key in wanted_keys:
        index = next(
            (i for i, r in enumerate(records) if i not in used and r.get("key") == key), None
        )
        if index is None:
            break
        used.add(index)
        found.append(records[index])
    return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
