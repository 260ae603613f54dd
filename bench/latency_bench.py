"""Latency from cause to effect: how long from an event's arrival at the door to its effect.

A steady open-loop load of `client.onboarded` events (distinct clients, one create call each) is
POSTed to a real `subaccount-worker ingress` process at a fixed rate; one `subaccount-worker
worker` process consumes them against the sandbox (its own process). For each event:

- door      the moment the request was sent to the ingress (this process's clock);
- effect    the sandbox journal's time of the create call (the API applied it);
- outcome   the outcome stream entry's id (Redis's clock: the outcome was recorded).

It prints p50/p95/p99/max of door → effect and door → outcome at each API latency. All clocks are
this machine's. The worker's `--threads` and the rate are options.

    python -m bench.latency_bench                  # 50 events/s, 60 s per latency, 0 and 100 ms
    python -m bench.latency_bench --quick          # 10 s per latency
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import redis

from bench.common import (
    API_KEY,
    Proc,
    Services,
    base_parser,
    print_table,
    progress,
    run_main,
    services,
)
from handlers import examples, username_for
from worker.dev.devservers import free_port, wait_until

TOKEN = "latency-bench-token-" + "a" * 24
PREFIX = "saw"


def _env(svc: Services, extra: dict[str, str]) -> dict[str, str]:
    return {
        "SUBACCOUNT_WORKER_REDIS_URL": svc.redis_url,
        "SUBACCOUNT_WORKER_API_BASE_URL": svc.api_url,
        "SUBACCOUNT_WORKER_API_KEY": API_KEY,
        "SUBACCOUNT_WORKER_INGRESS_TOKENS": TOKEN,
        "SUBACCOUNT_WORKER_METRICS_PORT": "0",
        "SUBACCOUNT_WORKER_LOG_LEVEL": "WARNING",
        **extra,
    }


def _start(svc: Services, name: str, argv: list[str], env: dict[str, str]) -> Proc:
    proc = Proc(name, [sys.executable, "-m", "worker.cli", *argv], env=env,
                output=svc.workdir / f"{name}.log")  # fmt: skip
    proc.start()
    svc.procs.append(proc)
    return proc


def _stop_all(procs: list[Proc]) -> None:
    for proc in reversed(procs):
        proc.stop()


def _send_steadily(url: str, rate: float, seconds: float) -> dict[str, float]:
    """POST events at `rate`/s for `seconds` (open loop: a slow answer does not slow the next
    send); returns event id → send time (epoch seconds)."""
    sent: dict[str, float] = {}
    lock = threading.Lock()
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/cloudevents+json"}
    run = uuid.uuid4().hex[:6]
    total = int(rate * seconds)

    with httpx.Client(base_url=url, timeout=10) as http, ThreadPoolExecutor(16) as pool:

        def post(i: int) -> None:
            event = examples.onboarded(f"lat-{run}-{i}")
            at = time.time()
            response = http.post("/events", json=event, headers=headers)
            if response.status_code != 202:
                raise RuntimeError(f"ingress answered {response.status_code}: {response.text}")
            with lock:
                sent[event["id"]] = at

        start = time.monotonic()
        futures = []
        for i in range(total):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(post, i))
        for future in futures:
            future.result()
    return sent


def _percentiles(values: list[float]) -> list[str]:
    if not values:
        return ["-"] * 4
    qs = statistics.quantiles(values, n=100, method="inclusive")
    return [f"{qs[49]:.0f}", f"{qs[94]:.0f}", f"{qs[98]:.0f}", f"{max(values):.0f}"]


def _journal_times(svc: Services) -> dict[str, float]:
    times: dict[str, float] = {}
    for entry in svc.admin.journal(operation="create"):
        username = str(entry.get("username") or "")
        times[username] = dt.datetime.fromisoformat(entry["time"]).timestamp()
    return times


def measure(
    svc: Services, ingress_port: int, latency_ms: float, rate: float, seconds: float
) -> list[list[str]]:
    """One run at one API latency: the two rows of percentiles (ms)."""
    svc.admin.reset()
    svc.latency(latency_ms)
    client = redis.Redis.from_url(svc.redis_url)
    url = f"http://127.0.0.1:{ingress_port}"
    outcomes_key = f"{PREFIX}:outcomes"
    before = client.xlen(outcomes_key)
    _send_steadily(url, 10, 1)  # warm-up: the worker's first events are not measured
    wait_until(lambda: client.xlen(outcomes_key) >= before + 10, 60, "the warm-up outcomes")
    before = client.xlen(outcomes_key)
    sent = _send_steadily(url, rate, seconds)
    expected = before + len(sent)
    wait_until(lambda: client.xlen(outcomes_key) >= expected, 120, "every outcome recorded")
    outcome_at: dict[str, float] = {}
    by_client: dict[str, str] = {}
    for entry_id, fields in client.xrange(outcomes_key):
        event_id = fields[b"event_id"].decode()
        outcome_at[event_id] = int(entry_id.split(b"-")[0]) / 1000
        by_client[username_for(fields[b"client_id"].decode())] = event_id
    effect_at = {
        by_client[user]: at for user, at in _journal_times(svc).items() if user in by_client
    }
    client.close()
    effect = [(effect_at[e] - sent[e]) * 1000 for e in sent if e in effect_at]
    outcome = [(outcome_at[e] - sent[e]) * 1000 for e in sent if e in outcome_at]
    label = f"{latency_ms:.0f} ms"
    return [
        [label, "door -> API call done", str(len(effect)), *_percentiles(effect)],
        [label, "door -> outcome recorded", str(len(outcome)), *_percentiles(outcome)],
    ]


def main() -> int:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="load per latency")
    parser.add_argument("--threads", type=int, default=16, help="worker threads")
    parser.add_argument(
        "--worker-env", action="append", default=[], help="NAME=VALUE for the worker (repeat)"
    )
    parser.add_argument("--latencies", default="0,100", help="API latencies (ms), comma-separated")
    args = parser.parse_args()
    seconds = 10.0 if args.quick else args.seconds
    with services(with_redis=True) as svc:
        env = _env(svc, {})
        port = free_port()
        _start(svc, "ingress", ["ingress", "--port", str(port)], env)
        worker_env = {**env, **dict(kv.split("=", 1) for kv in args.worker_env)}
        _start(svc, "worker", ["worker", "--processes", "1", "--threads", str(args.threads)],
               worker_env)  # fmt: skip
        wait_until(lambda: _up(port), 30, "the ingress")
        rows: list[list[str]] = []
        for latency in [float(x) for x in args.latencies.split(",")]:
            progress(
                f"{args.rate:.0f} events/s for {seconds:.0f} s at {latency:.0f} ms API latency"
            )
            rows += measure(svc, port, latency, args.rate, seconds)
            svc.check()
    print_table(
        f"Latency, {args.rate:.0f} events/s, 1 worker process x {args.threads} threads "
        f"({os.cpu_count()} cores, pid {os.getpid()})",
        ["API latency", "span", "events", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        rows,
    )
    return 0


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    run_main(main)
