"""The idempotency ledger: one record per event and plan step, kept in a Redis hash per event.

A grant's record moves IN_PROGRESS → DONE (the pattern of AWS Powertools' idempotency
records); steps that are safe to repeat only get their DONE record. An IN_PROGRESS record found
by a later attempt means an earlier attempt died or lost its answer mid-call: its outcome is
unknown and is resolved by evidence (`worker.pipeline.steps`), never by blindly calling again.
The hash's `_outcome` field holds how the event ended (`{"outcome": "applied"}`, ...), so a
redelivery or replay of a finished event is recorded as a duplicate and does nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

OUTCOME_FIELD = "_outcome"


class StepState(StrEnum):
    IN_PROGRESS = "in_progress"
    DONE = "done"


@dataclass(frozen=True)
class StepRecord:
    """What the ledger knows of one step: state, who started it, evidence taken before the call."""

    state: StepState
    owner: str
    at_ms: int
    evidence: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> str:
        return json.dumps(
            {
                "state": self.state.value,
                "owner": self.owner,
                "at_ms": self.at_ms,
                "evidence": self.evidence,
                "result": self.result,
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, raw: str | bytes) -> StepRecord:
        data = json.loads(raw)
        return cls(
            state=StepState(data["state"]),
            owner=data["owner"],
            at_ms=data["at_ms"],
            evidence=data.get("evidence") or {},
            result=data.get("result") or {},
        )


@dataclass(frozen=True)
class Ledger:
    """The step records of one event as read at the start of an attempt (an event with an
    `_outcome` never gets this far: `open` reports it finished)."""

    steps: dict[str, StepRecord]

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes] | dict[str, str]) -> Ledger:
        steps: dict[str, StepRecord] = {}
        for key, value in raw.items():
            name = key.decode() if isinstance(key, bytes) else key
            if name != OUTCOME_FIELD:
                steps[name] = StepRecord.decode(value)
        return cls(steps=steps)

    def is_done(self, step: str) -> bool:
        record = self.steps.get(step)
        return record is not None and record.state == StepState.DONE

    def unfinished(self, step: str) -> StepRecord | None:
        """The record of a step an earlier attempt started but never finished, if any."""
        record = self.steps.get(step)
        return record if record is not None and record.state == StepState.IN_PROGRESS else None
