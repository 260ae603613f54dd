"""The parts of one sandbox shared by all its routes, and how a route finds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from starlette.requests import Request

from worker.sandbox.faults import FaultInjector
from worker.sandbox.journal import Journal
from worker.sandbox.state import SandboxState


@dataclass(frozen=True)
class Sandbox:
    """The API key, the state, the effect journal and the fault injector of one app."""

    api_key: str
    state: SandboxState
    journal: Journal
    faults: FaultInjector

    def reset(self) -> None:
        """Empty state and journal; faults back to the start configuration."""
        with self.state.lock:
            self.state.reset()
            self.journal.clear()
            self.faults.reset()


def sandbox_of(request: Request) -> Sandbox:
    """The sandbox the app serving `request` was created with."""
    return cast(Sandbox, request.app.state.sandbox)
