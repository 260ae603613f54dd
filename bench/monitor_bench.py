"""A full credits scan under the API's rate limit while a worker processes events beside it.

The sandbox (its own process) refuses more than `--api-rps` calls per second with 429. The
worker (`subaccount-worker worker`, its own process group) and the monitor's scan (in this
process, `Scanner.scan` as `subaccount-worker monitor` runs it) share the Redis token bucket set
a little under that limit (`--limit-rps`), the monitor itself taking at most `--share` of it.
Meanwhile the worker onboards clients (create, credit-details read, grant: three calls each).

Printed: the scan's duration against what the rate allows ((N + pages) / (limit x share)), the
429s each side met (the monitor's failed reads, the worker's `Transient` API results; the sandbox
journal's `rate_limited` writes as a cross-check), and what the worker got done meanwhile.

    python -m bench.monitor_bench             # 2,000 subaccounts at 50 req/s: ~2 minutes
    python -m bench.monitor_bench --quick     # 200 subaccounts: ~15 s
"""

from __future__ import annotations

import statistics
import time
import urllib.request
from collections import Counter
from typing import Any

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
from bench.pipeline_bench import cli
from handlers import examples as f
from worker import keys
from worker.credits.monitor import build_monitor, monitor_client
from worker.dev.devservers import free_port, wait_until
from worker.log import configure_logging
from worker.pipeline.publish import Publisher
from worker.settings import ENV_PREFIX, Settings, load_settings


def _settings(svc: Services, limit_rps: float, share: float, metrics_port: int) -> Settings:
    return load_settings(
        redis_url=svc.redis_url,
        api_base_url=svc.api_url,
        api_key=API_KEY,
        api_rate_limit_rps=limit_rps,
        api_rate_limit_scope="redis",
        monitor_rate_share=share,
        monitor_page_size=100,
        metrics_port=metrics_port,
        log_level="WARNING",
        log_format="json",
    )


def _env(settings: Settings) -> dict[str, str]:
    names = (
        "redis_url",
        "api_base_url",
        "api_rate_limit_rps",
        "api_rate_limit_scope",
        "metrics_port",
        "log_level",
        "log_format",
    )
    env = {f"{ENV_PREFIX}{name.upper()}": str(getattr(settings, name)) for name in names}
    env[f"{ENV_PREFIX}API_KEY"] = API_KEY
    return env


def _worker_results(port: int) -> Counter[str]:
    """The worker's API calls by result, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("saw_api_calls_total{"):
            labels, value = line.rsplit(" ", 1)
            result = labels.split('result="', 1)[1].split('"', 1)[0]
            found[result] += int(float(value))
    return found


def main() -> int:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--subaccounts", type=int, default=2000)
    parser.add_argument("--api-rps", type=float, default=50.0, help="the sandbox's 429 limit")
    parser.add_argument("--limit-rps", type=float, default=45.0, help="our shared bucket")
    parser.add_argument("--share", type=float, default=0.5, help="monitor's share of it")
    parser.add_argument("--events", type=int, default=0, help="onboardings (default: plenty)")
    args = parser.parse_args()
    count = 200 if args.quick else args.subaccounts
    with services(with_redis=True) as svc:
        port = free_port()
        settings = _settings(svc, args.limit_rps, args.share, port)
        configure_logging(settings)
        progress(f"creating {count} subaccounts in the sandbox")
        subs = {
            f"shop-{i:05d}": {
                "email": f"s{i}@example.com",
                "credit_type": "one_time_credit",
                "balance": 1000 + i,
            }
            for i in range(count)
        }
        svc.admin.set_state({"subaccounts": subs})
        svc.admin.set_faults({"rate_limit": {"rps": args.api_rps, "retry_after_s": 1}})
        client = redis.Redis.from_url(svc.redis_url)
        events = args.events or int(count * 0.6)
        Publisher(client, settings).publish_many(
            [f.onboarded(f"bench-{i}", credits=10) for i in range(events)]
        )
        worker = Proc(
            "worker",
            [*cli(), "worker", "--processes", "1", "--threads", "4"],
            env=_env(settings),
            output=svc.workdir / "worker.log",
        )
        worker.start()
        try:
            wait_until(
                lambda: client.xlen(keys.outcomes("saw")) > 0, 60, "the worker's first event"
            )
            figures = _scan(settings, client, count, port, args)
        finally:
            worker.stop()
        _print(figures, args, count, events)
    return 0


def _scan(
    settings: Settings, client: redis.Redis, count: int, port: int, args: Any
) -> dict[str, Any]:
    results: Counter[str] = Counter()
    latencies: list[float] = []

    def observe(operation: str, result: str, seconds: float) -> None:
        results.update([result])
        latencies.append(seconds)

    monitor = build_monitor(settings, client)
    monitor.scanner.api.close()
    monitor.scanner.api = monitor_client(settings, client, observer=observe)
    before_worker = _worker_results(port)
    before_events = client.xlen(keys.outcomes("saw"))
    progress(f"scanning {count} subaccounts")
    started = time.perf_counter()
    report = monitor.scanner.scan()
    seconds = time.perf_counter() - started
    after_worker = _worker_results(port)
    events_done = client.xlen(keys.outcomes("saw")) - before_events
    worker_calls = after_worker - before_worker
    monitor.scanner.api.close()
    return {
        "latency_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "report": report,
        "seconds": seconds,
        "monitor": results,
        "worker": worker_calls,
        "events": events_done,
    }


def _print(fig: dict[str, Any], args: Any, count: int, events: int) -> None:
    report = fig["report"]
    monitor_calls = sum(fig["monitor"].values())
    worker_calls = sum(fig["worker"].values())
    seconds = fig["seconds"]
    rate = args.limit_rps * args.share
    expected = monitor_calls / rate
    rows = [
        ["subaccounts scanned", f"{report.scanned} ({count} + onboarded by the worker)"],
        ["monitor API calls (lists + reads)", str(monitor_calls)],
        ["scan duration", f"{seconds:.1f} s"],
        [f"expected at {rate:.1f} req/s (limit x share)", f"{expected:.1f} s"],
        ["duration / expected", f"{seconds / expected:.3f}"],
        ["monitor call latency (median, after the limiter)", f"{fig['latency_ms']:.1f} ms"],
        ["monitor 429s (Transient)", str(fig["monitor"].get("Transient", 0))],
        ["monitor read errors", str(report.errors)],
        ["worker API calls during the scan", str(worker_calls)],
        ["worker 429s (Transient)", str(fig["worker"].get("Transient", 0))],
        ["worker events finished during the scan", f"{fig['events']} (of {events} queued)"],
        ["both together", f"{(monitor_calls + worker_calls) / seconds:.1f} req/s"],
        ["sandbox limit / our shared bucket", f"{args.api_rps:.0f} / {args.limit_rps:.0f} req/s"],
    ]
    print_table("credits scan beside a worker, sharing the API rate limit", ["", ""], rows)


if __name__ == "__main__":
    run_main(main)
