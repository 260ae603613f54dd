"""Records the pipeline writes when an event ends: the dead letter, kept until an operator acts.

The executor builds them and the attempt's finishing script stores them
(`worker.pipeline.attempts`); `worker.ops.dead_letters` reads, filters and purges them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from handlers.outcomes import Reason


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
        data = json.loads(raw)
        return cls(**{**data, "reason": Reason(data["reason"])})
