"""Records the pipeline writes when an event ends: its outcome record (on the outcome stream and
its client's timeline) and its dead letter, kept until an operator acts.

The executor builds them and the attempt's finishing script stores them
(`worker.pipeline.attempts`); `worker.ops` reads them (and filters, replays, purges dead letters).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from handlers.outcomes import Outcome, Reason
from worker.pipeline.results import AttemptInfo


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered event with everything an operator needs to decide what to do."""

    key: str
    event: dict[str, Any]
    reason: Reason
    detail: str
    attempts: int
    first_failure_ms: int
    last_failure_ms: int
    step: str | None = None
    readings: dict[str, Any] = field(default_factory=dict)
    # The grant step of its plan and the business key it claims (e.g. "invoice:INV-1"), so a
    # purge can give the key back when the grant never took effect.
    grant_step: str | None = None
    business_key: str | None = None
    # Its own truth, kept with it until it is replayed or purged (the ledger and the owner keys
    # expire): its ledger's step records as stored (step → encoded `StepRecord`), and its entry
    # in the client's business keys (business key → "<event key> <amount>[ held]"). Written by
    # the script that stores the letter (`lua/dead_letter_truth.lua`).
    ledger: dict[str, str] = field(default_factory=dict)
    holds: dict[str, str] = field(default_factory=dict)

    @property
    def client_id(self) -> str:
        return str(self.event.get("subject", ""))

    @property
    def event_type(self) -> str:
        return str(self.event.get("type", ""))

    def encode(self) -> str:
        """JSON; `ledger` and `holds` only when set (the storing script appends them)."""
        data = asdict(self)
        for name in ("ledger", "holds"):
            if not data[name]:
                del data[name]
        return json.dumps(data, separators=(",", ":"), default=str)

    @classmethod
    def decode(cls, raw: str | bytes) -> DeadLetter:
        data = json.loads(raw)
        return cls(**{**data, "reason": Reason(data["reason"])})


def outcome_record(
    key: str,
    event: dict[str, Any],
    outcome: Outcome,
    reason: str | None,
    info: AttemptInfo,
    now_ms: int,
    steps: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The record of how an event ended: one shape for every ending, on the outcome stream and
    (as JSON) on its client's timeline. `invoice_id` and `amount` appear where the event has
    them; `replay` counts the operator's replays (0: never replayed)."""
    record: dict[str, Any] = {
        "key": key,
        "event_id": str(event.get("id", "")),
        "client_id": str(event.get("subject", "")),
        "event_type": str(event.get("type", "")),
        "outcome": outcome,
        "reason": reason or "",
        "at_ms": now_ms,
        "steps": steps or {},
        "attempt": info.attempt,
        "replay": info.replay,
    }
    data = event.get("data")
    if isinstance(data, dict):
        if isinstance(data.get("invoice_id"), str):
            record["invoice_id"] = data["invoice_id"]
        if type(data.get("credits")) is int:
            record["amount"] = data["credits"]
    return record
