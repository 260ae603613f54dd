"""No orphans: SIGKILL of the Dramatiq parent leaves exactly the configured number of consumers
once the supervisor has restarted the tree (before, its worker processes went on consuming
beside the new set: 4 processes where 2 are configured)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import redis

from handlers import examples as f
from tests.pipeline_support import wait_for_outcomes
from tests.servers import WorkerProcess, wait_until
from worker.pipeline.publish import Publisher
from worker.settings import load_settings

PROC = Path("/proc")
StartWorker = Callable[..., WorkerProcess]


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of `pid`, None once it is gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[3])


def _dramatiq(pid: int) -> bool:
    try:
        return b"dramatiq" in (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False


def _tree(session: int) -> dict[int, int]:
    """pid → parent pid of every Dramatiq process (parent or worker) of the worker's session."""
    found = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == session and _dramatiq(int(entry.name)):
                found[int(entry.name)] = stat[0]
    return found


def _consumers(tree: dict[int, int]) -> set[int]:
    """Every Dramatiq process that is not a parent of another: the worker processes, orphans
    included (which a parent that still has them is not)."""
    return {pid for pid in tree if pid not in tree.values()}


def test_sigkill_of_the_dramatiq_parent_leaves_the_configured_consumers(
    start_worker: StartWorker, redis_client: redis.Redis
) -> None:
    worker = start_worker("--processes", "2", "--threads", "1")
    assert worker.proc is not None
    session = worker.proc.pid

    def parents_with_two() -> set[int]:
        """The Dramatiq parents that have both their worker processes."""
        tree = _tree(session)
        parents = {parent for parent in tree.values() if parent in tree}
        return {p for p in parents if sum(1 for q in tree.values() if q == p) == 2}

    wait_until(lambda: len(parents_with_two()) == 1, timeout_s=60, what="2 worker processes")
    (first,) = parents_with_two()
    assert len(_consumers(_tree(session))) == 2
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: parents_with_two() - {first}, timeout_s=60, what="the restarted tree")
    tree = _tree(session)
    assert len(_consumers(tree)) == 2, tree  # not 4: the old ones died with their parent
    assert all(tree[pid] != first for pid in tree)
    event = f.onboarded("orphan-check")
    Publisher(redis_client, load_settings()).publish(event)
    assert wait_for_outcomes(redis_client, [event["id"]], timeout_s=30)[event["id"]]["outcome"]
