"""Replay and purge jobs started from the console run in this process, one thread each.

The operations `Runner` records the job in Redis (progress, cancel flag, audit); this module
only gives it a thread and hands back the job id as soon as the record exists, so the page can
follow it. Stopping the console asks each running job to stop between batches.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from worker.errors import SubaccountWorkerError
from worker.log import get_logger
from worker.ops.jobs import Runner
from worker.ops.plans import Plan

log = get_logger(__name__)
START_TIMEOUT_S = 10.0


class _Announcing(Runner):
    """A Runner that announces its job id when the job record is written."""

    announced: queue.SimpleQueue[str | BaseException]

    def _start(self, plan: Plan, operator: str, rate: float | None) -> str:
        job_id = super()._start(plan, operator, rate)
        self.announced.put(job_id)
        return job_id


class BackgroundJobs:
    """The jobs this process runs: their threads and stop signals."""

    def __init__(self) -> None:
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, runner: Runner, plan: Plan, operator: str, rate: float | None) -> str:
        """Run `plan` in a thread; return its job id once recorded (or raise what stopped it)."""
        announcing = _Announcing(runner.client, runner.prefix, runner.publisher)
        announcing.timeline_maxlen = runner.timeline_maxlen
        announcing.announced = queue.SimpleQueue()
        stop = threading.Event()

        def work() -> None:
            try:
                announcing.run(plan, operator=operator, rate=rate, stop=stop)
            except Exception as exc:  # reported to the starter, or logged once it has left
                log.exception("console_job_failed", action=plan.action, operator=operator)
                announcing.announced.put(exc)

        threading.Thread(target=work, name=f"console-{plan.action}", daemon=True).start()
        first: Any = announcing.announced.get(timeout=START_TIMEOUT_S)
        if isinstance(first, BaseException):
            if isinstance(first, SubaccountWorkerError):
                raise first
            raise SubaccountWorkerError(f"the {plan.action} job did not start: {first}")
        with self._lock:
            self._stops[first] = stop
        return str(first)

    def cancel(self, job_id: str) -> None:
        with self._lock:
            stop = self._stops.get(job_id)
        if stop is not None:
            stop.set()

    def stop_all(self) -> None:
        with self._lock:
            for stop in self._stops.values():
                stop.set()
