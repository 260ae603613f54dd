"""The `subaccount-worker` command line: run the worker, ingress and sandbox; send and replay.

Every command reads settings from `SUBACCOUNT_WORKER_*`; a bad setting ends the command with one
line naming the variable (exit 2), never a traceback. One module per command group registers on
the shared `app` (`worker.cli.base`).
"""

from __future__ import annotations

from worker.cli import console, credits, dead_letters, events, ops_views, run
from worker.cli.base import app

__all__ = ["app", "console", "credits", "dead_letters", "events", "ops_views", "run"]
