"""A worker module whose process dies (SIGKILL) whenever it touches a `poison-*` subaccount.

It loads the real `worker.actors` and wraps one method of our own code, standing in for the
segfaults and OOM kills that make a message poison in the field.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from worker import actors
from worker.pipeline.steps import StepRunner

_run = StepRunner.run


def _run_or_die(self: StepRunner, step: Any) -> dict[str, Any]:
    request = getattr(step, "request", None)
    if str(getattr(request, "username", "")).startswith("poison"):
        os.kill(os.getpid(), signal.SIGKILL)
    return _run(self, step)


StepRunner.run = _run_or_die  # type: ignore[method-assign]
broker = actors.broker
