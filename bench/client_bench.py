"""Requests per second of the Subaccount API client against the sandbox, by latency and callers.

N threads share one `SubaccountClient` whose httpx pool is built by `build_http_client` from
settings with `worker_threads = N` (the worker's real sizing), and call one operation in a loop:
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
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.common import (
    API_KEY,
    Figure,
    Services,
    base_parser,
    print_table,
    progress,
    run_main,
    services,
)
from worker import metrics
from worker.api.client import SubaccountClient, build_http_client
from worker.api.models import ChangeCredits
from worker.errors import ApiError
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
    errors: int = 0


@dataclass(frozen=True)
class Window:
    rate: float
    latencies_ms: list[float]
    errors: int


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
        build_http_client(settings),
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
        except ApiError:
            tally.errors += 1
            continue
        ended = clock()
        tally.ends.append(ended)
        tally.latencies.append(ended - started)


def measure(client: SubaccountClient, op: str, callers: int, timing: Timing) -> Window:
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
        begin = time.perf_counter()
        time.sleep(timing.window_s)
        end = time.perf_counter()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    done = 0
    latencies: list[float] = []
    for tally in tallies:
        for ended, latency in zip(tally.ends, tally.latencies, strict=True):
            if begin <= ended < end:
                done += 1
                latencies.append(latency * 1000)
    return Window(done / (end - begin), latencies, sum(t.errors for t in tallies))


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def run_case(svc: Services, latency_ms: int, callers: int, op: str, timing: Timing) -> list[str]:
    figure = Figure()
    latencies: list[float] = []
    errors = 0
    client = make_client(svc, callers)
    try:
        for _ in range(timing.runs):
            svc.check()
            window = measure(client, op, callers, timing)
            figure.add(window.rate)
            latencies += window.latencies_ms
            errors += window.errors
    finally:
        client.close()
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
        str(errors),
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
        "latency", "callers", "op", "req/s", "runs", "spread",
        "ideal", "p50 ms", "p99 ms", "errors",
    ]  # fmt: skip
    print_table(
        "Subaccount API client against the sandbox (one shared client, pool sized by settings)",
        headers,
        rows,
    )
    print(
        f"\nread = get_credit_details, write = change_credits; ideal = callers / latency; "
        f"{timing.window_s:.1f} s windows, {runs} run(s) each; "
        f"took {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
