"""Following a replay job from the CLI (`dead-letters replay --wait`) and its breakdown in
words (`replay`, `jobs`)."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import nullcontext
from functools import partial
from typing import Any

from worker.cli import ops_render as r
from worker.ops.job_records import Job, get_job

WAIT_POLL_S = 0.5


def follow_job(client: Any, prefix: str, job: Job, timeout_s: float, quiet: bool) -> Job:
    """Follow a replay job until its events have all ended, or `timeout_s`, or Ctrl-C; the job
    as last seen. A status line on stderr shows the breakdown as it moves."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    deadline = time.monotonic() + timeout_s
    try:
        with r.err.status("", spinner="dots") if not quiet else nullcontext() as status:
            while not job.settled and time.monotonic() < deadline and not stop.is_set():
                if status is not None:
                    status.update(
                        f"waiting for {job.pending} replayed events: {outcomes_text(job)}"
                    )
                stop.wait(WAIT_POLL_S)
                job = r.run(partial(get_job, client, prefix, job.id)) or job
    finally:
        signal.signal(signal.SIGINT, previous)
    return job


def outcomes_text(job: Job) -> str:
    """The job's breakdown in words, e.g. "3 applied, 1 dead-lettered again, 2 pending"."""
    parts = [f"{n} {name.replace('_', '-').replace('-again', ' again')}"
             for name, n in job.breakdown().items() if n]  # fmt: skip
    if job.again_reasons:
        why = ", ".join(f"{reason} {n}" for reason, n in sorted(job.again_reasons.items()))
        parts.append(f"(again: {why})")
    return ", ".join(parts) or "nothing yet"
