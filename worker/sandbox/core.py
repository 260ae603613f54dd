"""The parts of one sandbox shared by all its routes, and how a route finds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from starlette.requests import Request

from worker.sandbox.faults import FaultInjector
from worker.sandbox.journal import Journal
from worker.sandbox.sending import Sending
from worker.sandbox.state import SandboxState


@dataclass(frozen=True)
class Sandbox:
    """The API key, the state, the effect journal, the fault injector and the mail sending."""

    api_key: str
    state: SandboxState
    journal: Journal
    faults: FaultInjector
    sending: Sending

    def reset(self) -> None:
        """Empty state and journal; faults back to the start configuration; sending stopped."""
        with self.state.lock:
            self.state.reset()
            self.journal.clear()
            self.faults.reset()
            self.sending.reset()


def sandbox_of(request: Request) -> Sandbox:
    """The sandbox the app serving `request` was created with."""
    return cast(Sandbox, request.app.state.sandbox)
