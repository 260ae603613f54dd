"""What one attempt of an event knows and has done so far: the executor's working state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handlers.events import Event
from handlers.plan import AddCredits, ClientState
from worker.pipeline.attempts import StepDone
from worker.pipeline.ledger import Ledger, StepState
from worker.pipeline.results import AttemptInfo


@dataclass
class Attempt:
    event: Event
    raw: dict[str, Any]
    info: AttemptInfo
    token: str
    state: ClientState
    ledger: Ledger
    now_ms: int
    # The last finished step's record, written by the attempt's next Redis call (one round
    # trip fewer per step); `_flush` writes it on paths that make no such call.
    pending: StepDone | None = None
    stepped: bool = False  # a step has run in this attempt (the lease needs renewing)
    did_steps: bool = False  # a step took effect in this attempt
    grant: AddCredits | None = None  # the plan's grant, whose business key a dead letter frees
    warning: str = ""  # for the outcome record: something a human should know
    # When the lease was last set (monotonic s, taken before the Redis call) and for how long:
    # the fence before a send reads them (`worker.pipeline.fence`).
    lease_at: float = 0.0
    lease_ms: int = 0

    @property
    def partly_applied(self) -> bool:
        """Some step of this event took effect (in this attempt or an earlier one)."""
        earlier = any(record.state == StepState.DONE for record in self.ledger.steps.values())
        return self.did_steps or earlier

    def take_pending(self) -> StepDone | None:
        pending, self.pending = self.pending, None
        return pending
