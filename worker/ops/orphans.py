"""No orphaned consumers: every worker process dies with its parent, and the supervisor starts a
new tree only once the old one is gone.

`kill -KILL` of the Dramatiq parent used to leave its worker processes consuming while the
supervisor started a new set beside them (in a container, with no init to reap them either).
Now three things hold:

- each process asks Linux for a signal when its parent dies (`prctl(PR_SET_PDEATHSIG)`): the
  Dramatiq parent through `python -m worker.ops.orphans <supervisor pid> <command>`, which sets
  it and then execs the command (no `preexec_fn`, unsafe in a threaded supervisor), the worker
  processes when they import `worker.actors`. The signal is SIGKILL, as if the machine were
  lost with the parent: what was in flight is taken up again by the ledger and Dramatiq's
  maintenance, the designed crash path (a graceful SIGTERM would let an orphan run on for the
  whole shutdown timeout beside its successors);
- the supervisor is a child subreaper (`PR_SET_CHILD_SUBREAPER`), so orphans of the tree become
  its children: after the parent exits it waits until it has no child left (reaping them; the
  Dramatiq parent is its only child), kills what outlives the grace period, and only then
  restarts. The tree stays in the supervisor's process group, so a signal to the group (a
  terminal's Ctrl-C, `kill -STOP -<pgid>`) still reaches every process.

Elsewhere than Linux (no prctl, no /proc) none of this applies and the supervisor restarts as
before.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import time
from pathlib import Path

PROC = Path("/proc")
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
POLL_S = 0.05


def _prctl(option: int, value: int) -> bool:
    """prctl(option, value) through libc; False where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return int(libc.prctl(option, value, 0, 0, 0)) == 0


def die_with_parent(expected_parent: int, sig: int = signal.SIGKILL) -> bool:
    """Have Linux send `sig` to this process when its parent dies; if the parent is already
    gone (this process now belongs to another), send it at once. False if unsupported."""
    armed = _prctl(PR_SET_PDEATHSIG, int(sig))
    if os.getppid() != expected_parent:  # died before the prctl took effect
        os.kill(os.getpid(), sig)
    return armed


def become_subreaper() -> bool:
    """Adopt the orphans of this process's descendants (they are reaped by `end_tree`)."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def launcher(command: list[str]) -> list[str]:
    """`command` run through this module, so that it dies with the calling process."""
    return [sys.executable, "-m", "worker.ops.orphans", str(os.getpid()), *command]


def children() -> list[int]:
    """The pids whose parent is this process (zombies too), from /proc; [] without /proc."""
    me, found = os.getpid(), []
    for entry in PROC.glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        if int(stat.rsplit(")", 1)[1].split()[1]) == me:
            found.append(int(entry.name))
    return found


def _reap() -> None:
    """Reap every child that has exited (adopted orphans included)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_tree(grace_s: float) -> bool:
    """Once the supervised child has exited: wait until this process has no child left (the
    orphans of its tree, adopted as subreaper), SIGKILL them after `grace_s`. True if they
    were all gone within the grace period."""
    deadline = time.monotonic() + grace_s
    killed = False
    while True:
        _reap()
        left = children()
        if not left:
            return not killed
        if not killed and time.monotonic() >= deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed = True
        time.sleep(POLL_S)


def main(argv: list[str]) -> None:
    """`python -m worker.ops.orphans <parent pid> <command...>`: die with that parent, exec."""
    parent, command = int(argv[0]), argv[1:]
    die_with_parent(parent)
    os.execv(command[0], command)  # noqa: S606 - the supervisor's own command line


if __name__ == "__main__":
    main(sys.argv[1:])
