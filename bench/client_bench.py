"""Requests per second of the Subaccount API client against the sandbox, by latency and callers.

N threads share one `SubaccountClient` whose HTTP session is built by `build_http_session` from
settings, as in a worker (each thread gets its own connection), and call one operation in a loop:
a read (`get_credit_details`) or a write (`change_credits`). The sandbox runs in its own process
with 0 ms or 100 ms of added latency. Each figure is the median of `--runs` windows, with the
spread between them; the first second of each window (connections opening) is not counted.

    python -m bench.client_bench            # ~1 minute
    python -m bench.client_bench --quick    # a smoke run of a few seconds
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.common import (
    API_KEY,
    CpuMeter,
    CpuUse,
    Figure,
    Services,
    base_parser,
    print_table,
    progress,
    run_main,
    services,
)
from handlers.requests import ChangeCredits
from worker.api.client import SubaccountClient, build_http_session
from worker.errors import ApiError
from worker.ops import metrics
from worker.settings import load_settings

LATENCIES_MS = (0, 100)
CALLERS = (8, 64)
OPERATIONS = ("read", "write")


@dataclass(frozen=True)
class Timing:
    warmup_s: float
    window_s: float
    runs: int


@dataclass
class Caller:
    """One calling thread's tally: completion times and latencies, errors."""

    ends: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # error class name -> count


@dataclass(frozen=True)
class Window:
    rate: float
    latencies_ms: list[float]
    errors: Counter[str]
    cpu: CpuUse  # per request: "bench" is the client side (this process), "sandbox" the server


def usernames(count: int) -> list[str]:
    return [f"bench-caller-{i:03d}" for i in range(count)]


def prepare_accounts(svc: Services, count: int) -> None:
    """One subaccount per caller, so callers do not all touch the same one."""
    accounts = {
        name: {"email": f"{name}@example.com", "credit_type": "one_time_credit", "balance": 0}
        for name in usernames(count)
    }
    svc.admin.set_state({"subaccounts": accounts})


def make_client(svc: Services, callers: int) -> SubaccountClient:
    """A client exactly as a worker process with `callers` threads builds it."""
    settings = load_settings(api_base_url=svc.api_url, api_key=API_KEY, worker_threads=callers)
    return SubaccountClient(
        build_http_session(settings),
        api_key=settings.api_key.get_secret_value(),
        surface=settings.api_surface,
        observer=metrics.observe_call,
    )


def operation(client: SubaccountClient, op: str, username: str) -> Callable[[], object]:
    if op == "read":
        return lambda: client.get_credit_details(username)
    request = ChangeCredits(username=username, amount=1)
    return lambda: client.change_credits(request)


def call_loop(call: Callable[[], object], tally: Caller, stop: threading.Event) -> None:
    clock = time.perf_counter
    while not stop.is_set():
        started = clock()
        try:
            call()
        except ApiError as exc:
            tally.errors[type(exc).__name__] += 1
            continue
        ended = clock()
        tally.ends.append(ended)
        tally.latencies.append(ended - started)


def measure(
    client: SubaccountClient, op: str, callers: int, timing: Timing, meter: CpuMeter
) -> Window:
    """Run `callers` threads for warm-up + window; the rate of calls completed in the window."""
    stop = threading.Event()
    tallies = [Caller() for _ in range(callers)]
    threads = [
        threading.Thread(
            target=call_loop, args=(operation(client, op, name), tally, stop), daemon=True
        )
        for name, tally in zip(usernames(callers), tallies, strict=True)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(timing.warmup_s)
        first = meter.sample()
        time.sleep(timing.window_s)
        last = meter.sample()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    latencies = [
        latency * 1000
        for tally in tallies
        for ended, latency in zip(tally.ends, tally.latencies, strict=True)
        if first.at <= ended < last.at
    ]
    done = len(latencies)
    cpu = CpuUse.between(first, last, done)
    errors = sum((t.errors for t in tallies), Counter[str]())
    return Window(done / (last.at - first.at), latencies, errors, cpu)


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def run_case(svc: Services, latency_ms: int, callers: int, op: str, timing: Timing) -> list[str]:
    figure = Figure()
    windows: list[Window] = []
    client = make_client(svc, callers)
    meter = CpuMeter(svc.cpu_probes())
    try:
        for _ in range(timing.runs):
            svc.check()
            window = measure(client, op, callers, timing, meter)
            figure.add(window.rate)
            windows.append(window)
    finally:
        client.close()
    latencies = [ms for window in windows for ms in window.latencies_ms]
    counted = sum((w.errors for w in windows), Counter[str]())
    errors = " ".join(f"{name}:{n}" for name, n in sorted(counted.items()))

    def cpu(process: str) -> str:
        return f"{statistics.median(w.cpu.ms_per_unit[process] for w in windows):.2f}"

    ideal = f"{callers * 1000 / latency_ms:.0f}" if latency_ms else "-"
    progress(f"{latency_ms} ms, {callers} callers, {op}: {figure.runs()} req/s")
    return [
        f"{latency_ms} ms",
        str(callers),
        op,
        f"{figure.median:.0f}",
        figure.runs(),
        f"{figure.spread_pct:.0f}%",
        ideal,
        f"{statistics.median(latencies):.1f}" if latencies else "-",
        f"{percentile(latencies, 99):.1f}",
        errors or "0",
        cpu("bench"),
        cpu("sandbox"),
        f"{max(w.cpu.other_cores for w in windows):.1f}",
    ]


def main() -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "client benchmark")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 2)
    timing = Timing(0.3, 0.7, runs) if args.quick else Timing(1.0, 4.0, runs)
    rows: list[list[str]] = []
    started = time.monotonic()
    with services(with_redis=False) as svc:
        prepare_accounts(svc, max(CALLERS))
        for latency_ms in LATENCIES_MS:
            svc.latency(latency_ms)
            for callers in CALLERS:
                for op in OPERATIONS:
                    rows.append(run_case(svc, latency_ms, callers, op, timing))
    headers = [
        "latency", "callers", "op", "req/s", "runs", "spread", "ideal",
        "p50 ms", "p99 ms", "errors", "client cpu", "sandbox cpu", "other load",
    ]  # fmt: skip
    print_table(
        "Subaccount API client against the sandbox (one shared client, a connection per thread)",
        headers,
        rows,
    )
    print(
        "read = get_credit_details, write = change_credits; ideal = callers / latency;\n"
        "cpu = CPU ms per request of the client process and of the sandbox; other load = cores\n"
        "busy with processes not ours during the window (a noisy neighbour makes figures noisy).\n"
        f"{timing.window_s:.1f} s windows, {runs} run(s) each; "
        f"took {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
