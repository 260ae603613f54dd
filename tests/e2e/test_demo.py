"""The demo as a newcomer runs it: every expectation of the story holds, nothing is left running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import wait_until

pytestmark = pytest.mark.e2e

DEMO = [sys.executable, "-m", "worker.cli", "demo"]
CHAPTERS = (
    "Three clients onboarded by the CRM",
    "Invoices paid, some reported twice",
    "A suspension and a reactivation, out of order",
    "An API outage turns two invoices into dead letters",
    "Bulk replay, previewed first",
    "A subaccount disabled by hand, found and fixed by reconcile",
    "A low-credit alert while the subaccounts send mail",
    "A client churns",
    "Where the story ends",
)


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children, their children, ...), from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_demo_ci_tells_the_whole_story_and_exits_0() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBACCOUNT_WORKER_")}
    done = subprocess.run([*DEMO, "--ci"], env=env, capture_output=True, text=True, timeout=110)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    for title in CHAPTERS:
        assert title in out
    held = re.search(r"all (\d+) expectations held", out)
    assert held, out
    assert int(held.group(1)) >= 26
    assert "Dead letters left: 0" in out
    assert "✗" not in out
    logs = re.search(r"Server logs: (\S+)", out)
    assert logs
    assert Path(logs.group(1), "worker.log").exists()
    assert "Traceback" not in out + done.stderr


def test_ctrl_c_after_the_story_stops_every_process() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBACCOUNT_WORKER_")}
    with subprocess.Popen(DEMO, env=env, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        children = _descendants(proc.pid)
        assert len(children) >= 5, "".join(lines)  # redis, sandbox, ingress, worker, consumer
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        assert proc.wait(timeout=60) == 0, rest  # Ctrl-C is how the console mode ends
    assert "every process stopped" in rest
    wait_until(lambda: not any(_alive(pid) for pid in children), timeout_s=30, what="no child left")
