"""The console's background work: replay and purge jobs (one thread each) and the index warmer.

The operations `Runner` records the job in Redis (progress, cancel flag, audit); this module
only gives it a thread and hands back the job id as soon as the record exists, so the page can
follow it. Stopping the console asks each running job to stop between batches.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import redis

from worker.errors import SubaccountWorkerError
from worker.log import get_logger
from worker.ops.index import DeadLetterIndex
from worker.ops.jobs import Runner
from worker.ops.plans import Plan

log = get_logger(__name__)
START_TIMEOUT_S = 10.0
INDEX_SYNC_S = 5.0


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


class IndexWarmer:
    """Keeps the operators' dead-letter index (`worker.ops.index`) up to date in the background,
    so a page never pays for indexing a burst of dead letters that arrived since the last look
    (the listing syncs too; syncing twice is harmless)."""

    def __init__(self, client: Any, prefix: str, period_s: float = INDEX_SYNC_S) -> None:
        self._index = DeadLetterIndex(client, prefix)
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-index", daemon=True)

    def start(self) -> IndexWarmer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._index.sync()
            except (redis.RedisError, SubaccountWorkerError) as exc:
                log.warning("console_index_sync_failed", error=type(exc).__name__)
            self._stop.wait(self._period_s)
