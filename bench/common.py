"""Shared parts of the benchmarks: owned processes, the sandbox, run statistics and tables.

Every process a benchmark needs (redis-server, the sandbox, worker processes) is started here on
a free loopback port, in its own session, and stopped with its whole process group when the
benchmark ends, fails or is interrupted (Ctrl-C, SIGTERM). Nothing here talks to a server it did
not start. The sandbox runs under uvicorn without its access log (what `subaccount-worker
sandbox` would write costs the server ~0.08 ms of CPU per request, ~17%).

CPU time is read from /proc for each process of ours and for the whole machine, so every figure
comes with the CPU it cost and with the load of whatever else ran meanwhile (on a shared 2-core
machine another engineer's job is the main source of noise).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.dev.devservers import RedisServer
    from worker.sandbox import SandboxAdmin

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-key-3b1f9c27d4e6"  # the sandbox's key: a loopback-only fixture, not a secret
SANDBOX_KEY_ENV = "BENCH_SANDBOX_API_KEY"

# The bare Dramatiq baseline (`bench.bare_actor`): its names, shared with the benchmark that
# enqueues its messages and counts their completions. Kept here so the actor module imports
# nothing heavy (this module imports the servers and the sandbox only when they are started).
BARE_NAMESPACE = "bench-bare"
BARE_QUEUE = "bare"
BARE_ACTOR = "bare_create"
BARE_DONE_KEY = f"{BARE_NAMESPACE}:done"
BARE_FAILED_KEY = f"{BARE_NAMESPACE}:failed"

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def sandbox_app() -> Any:
    """The sandbox app, for `uvicorn --factory bench.common:sandbox_app` (key from the env)."""
    from worker.sandbox import create_app

    return create_app(os.environ.get(SANDBOX_KEY_ENV, API_KEY))


class Proc:
    """A child process in its own session; `stop` ends its whole process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        output: Path | None = None,
        cpus: set[int] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.output = output
        self.cpus = cpus
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self) -> Proc:
        if self.output is None:
            sink: IO[bytes] | int = subprocess.DEVNULL
        else:
            self._out = sink = self.output.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if self.cpus:  # set before the interpreter starts threads or forks: they inherit it
            pin(self.proc.pid, self.cpus)
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            code = self.proc.returncode if self.proc else None
            raise RuntimeError(f"{self.name} exited early (code {code}){self.tail()}")

    def tail(self, lines: int = 15) -> str:
        """The last lines of the process's output, if it went to a file."""
        if self.output is None or not self.output.exists():
            return ""
        text = self.output.read_text(errors="replace").splitlines()[-lines:]
        return "\n  " + "\n  ".join(text) if text else ""

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a lost machine would."""
        if self.proc is not None:
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self._out is not None:
            self._out.close()
            self._out = None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the group, wait up to `grace_s`, then SIGKILL whatever is left of it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        _signal_group(self.proc.pid, signal.SIGKILL)  # stragglers (e.g. dramatiq's children)
        if self._out is not None:
            self._out.close()
            self._out = None


def _stat(pid: str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state is [0], pgrp [2])."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None  # it exited meanwhile


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (0 if it is gone)."""
    fields = _stat(str(pid))
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS if fields else 0.0


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of the live processes of process group `pgid`."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat(entry.name)) and int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _CLOCK_TICKS


def pin(pid: int, cpus: set[int]) -> None:
    """Restrict every thread of process `pid` (and what it starts later) to `cpus`."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task), cpus)


def split_cpus() -> tuple[set[int], set[int]] | None:
    """CPU 0 for the process under test, the others for everything else (None on one CPU)."""
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, set(cpus[1:])) if len(cpus) > 1 else None


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, from /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far: by each of our processes, and by the whole machine."""

    at: float
    ours: dict[str, float]
    machine: float


class CpuMeter:
    """Samples the CPU time of named processes of ours, and of everything else on the machine."""

    def __init__(self, probes: dict[str, Callable[[], float]]) -> None:
        self.probes = {**probes, "bench": lambda: process_cpu_s(os.getpid())}

    def sample(self) -> CpuSample:
        ours = {name: probe() for name, probe in self.probes.items()}
        return CpuSample(time.perf_counter(), ours, machine_busy_s())


@dataclass(frozen=True)
class CpuUse:
    """CPU between two samples: ms per unit of work for each process of ours, and the load of
    everything else on the machine in cores (other engineers' jobs make figures noisy)."""

    ms_per_unit: dict[str, float]
    other_cores: float

    @staticmethod
    def between(first: CpuSample, last: CpuSample, units: int) -> CpuUse:
        used = {k: last.ours[k] - first.ours[k] for k in last.ours}
        wall = max(last.at - first.at, 1e-9)
        other = max(0.0, (last.machine - first.machine) - sum(used.values())) / wall
        per_unit = {k: 1000 * v / max(units, 1) for k, v in used.items()}
        return CpuUse(per_unit, other)


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


@dataclass
class Services:
    """What a benchmark runs against: the sandbox (and a Redis server, if asked for)."""

    workdir: Path
    sandbox_url: str
    admin: SandboxAdmin
    redis: RedisServer | None = None
    procs: list[Proc] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        """The v6 base URL of the sandbox (what the worker's settings call `api_base_url`)."""
        return f"{self.sandbox_url}/v6"

    @property
    def redis_url(self) -> str:
        if self.redis is None:
            raise RuntimeError("this benchmark started no Redis server")
        return self.redis.url

    def latency(self, latency_ms: float) -> None:
        """Set the sandbox's latency on every operation (and nothing else: no faults)."""
        self.admin.set_faults({"default": {"latency_ms": latency_ms}})

    def check(self) -> None:
        for proc in self.procs:
            proc.check_alive()

    def pin_servers(self, cpus: set[int]) -> None:
        """Keep the sandbox, Redis and this process on `cpus` (see `split_cpus`)."""
        pin(self.procs[0].pid, cpus)
        if self.redis is not None and self.redis.proc is not None:
            pin(self.redis.proc.pid, cpus)
        pin(os.getpid(), cpus)

    def cpu_probes(self) -> dict[str, Callable[[], float]]:
        """Probes of the CPU seconds used so far by the sandbox (and the Redis server)."""
        sandbox = self.procs[0].pid
        probes: dict[str, Callable[[], float]] = {"sandbox": lambda: process_cpu_s(sandbox)}
        if self.redis is not None and self.redis.proc is not None:
            redis_pid = self.redis.proc.pid
            probes["redis"] = lambda: process_cpu_s(redis_pid)
        return probes


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def start_sandbox(workdir: Path, stack: contextlib.ExitStack) -> tuple[Proc, str]:
    """The sandbox under uvicorn in its own process (no access log: it would cost the server)."""
    from worker.dev.devservers import free_port, wait_until

    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "bench.common:sandbox_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning",
        "--timeout-graceful-shutdown", "2",
    ]  # fmt: skip
    proc = Proc("sandbox", argv, env={SANDBOX_KEY_ENV: API_KEY}, output=workdir / "sandbox.log")
    proc.start()
    stack.callback(proc.stop)
    url = f"http://127.0.0.1:{port}"
    from worker.sandbox import SandboxAdmin

    with SandboxAdmin(url, timeout_s=2.0) as probe:

        def ready() -> bool:
            proc.check_alive()
            return probe.health()

        wait_until(ready, 20, f"the sandbox on port {port}")
    return proc, url


@contextlib.contextmanager
def services(*, with_redis: bool) -> Iterator[Services]:
    """Start the sandbox (and Redis) on free loopback ports; stop everything on the way out."""
    from worker.dev.devservers import RedisServer
    from worker.sandbox import SandboxAdmin

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="saw-bench-"))
        stack.callback(_remove_tree, workdir)
        redis_server = None
        if with_redis:
            redis_server = RedisServer()
            stack.callback(redis_server.cleanup)
            redis_server.start()
        sandbox, url = start_sandbox(workdir, stack)
        svc = Services(workdir, url, SandboxAdmin(url, timeout_s=30.0), redis_server, [sandbox])
        stack.callback(svc.admin.close)
        try:
            yield svc
        finally:
            signal.signal(signal.SIGTERM, previous)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --- figures ----------------------------------------------------------------------------------


@dataclass
class Figure:
    """Repeated measurements of one rate, with the spread that tells how far to trust it."""

    values: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, value: float, note: str = "") -> None:
        self.values.append(value)
        if note and note not in self.notes:
            self.notes.append(note)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def spread_pct(self) -> float:
        """(max - min) / median, in percent: how much the runs disagree."""
        if len(self.values) < 2 or not self.median:
            return 0.0
        return 100 * (max(self.values) - min(self.values)) / self.median

    def runs(self) -> str:
        return " / ".join(f"{v:.0f}" for v in self.values)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A plain text table: left-aligned first column, right-aligned figures."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    print(f"\n{title}")
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    sys.stdout.flush()


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (seconds)")
    parser.add_argument("--runs", type=int, default=0, help="runs per figure (default 2; quick 1)")
    return parser


def progress(message: str) -> None:
    """A progress line on stderr, so stdout holds only the figures."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


def run_main(main: Callable[[], int]) -> None:
    """Run a benchmark's main; Ctrl-C ends it with code 130 after its cleanup ran."""
    try:
        code = main()
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        code = 130
    raise SystemExit(code)
