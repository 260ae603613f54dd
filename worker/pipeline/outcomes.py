"""Records the pipeline writes when an event ends: the dead letter, kept until an operator acts.

The executor builds them and the attempt's finishing script stores them
(`worker.pipeline.attempts`); `worker.ops.dead_letters` reads, filters and purges them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered event with everything an operator needs to decide what to do."""

    key: str
    event: dict[str, Any]
    reason: str
    detail: str
    attempts: int
    first_failure_ms: int
    last_failure_ms: int
    step: str | None = None
    readings: dict[str, Any] = field(default_factory=dict)

    @property
    def client_id(self) -> str:
        return str(self.event.get("subject", ""))

    @property
    def event_type(self) -> str:
        return str(self.event.get("type", ""))

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def decode(cls, raw: str | bytes) -> DeadLetter:
        return cls(**json.loads(raw))
