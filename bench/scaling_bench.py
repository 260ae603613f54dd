"""A scaling curve: events/s of the pipeline for 1, 2 and 4 worker processes, at 0 and 100 ms of
API latency, and under an API rate limit; CPU per event; one PNG for docs/benchmarks.md.

Each point is `bench.pipeline_bench`'s pipeline side (its `Bench`: the same servers, the same
measurement from the first completion to the last) with `client.onboarded` events (one create
call each). The rate-limited points set the sandbox's limit (429 over it) and the worker's
client-side limit (`SUBACCOUNT_WORKER_API_RATE_LIMIT_RPS`, shared through Redis) to 95% of it
(`CLIENT_SHARE`): the goal is to reach >= 95% of the provider's limit with zero 429s.

    python -m bench.scaling_bench            # ~4 minutes; writes docs/scaling.png and .json
    python -m bench.scaling_bench --quick    # fewer events per point (~1 minute)
    python -m bench.scaling_bench --replot   # redraw from docs/scaling.json
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, base_parser, print_table, progress, run_main, services
from bench.pipeline_bench import Bench, Case
from worker.settings import ENV_PREFIX

PROCESSES = (1, 2, 4)
THREADS = {0: 8, 100: 32}  # per process: enough to keep the CPU busy at each latency
RATE_LIMIT_RPS = 100.0
# The workers' own limit as a share of the provider's: equal limits meet out of phase (the two
# buckets refill at different moments), so a few calls would still get 429.
CLIENT_SHARE = 0.95
PNG = REPO / "docs" / "scaling.png"


class LimitedBench(Bench):
    """`Bench` whose workers also get a client-side API rate limit."""

    rps: float = 0.0

    def worker_env(self, log_level: str, name: str) -> dict[str, str]:
        env = super().worker_env(log_level, name)
        if self.rps:
            env[f"{ENV_PREFIX}API_RATE_LIMIT_RPS"] = str(self.rps * CLIENT_SHARE)
        return env


def _point(bench: LimitedBench, case: Case) -> dict[str, Any]:
    """A point without a rate limit."""
    bench.rps = 0.0
    return _figures(case, bench.run("onboarded", case), 0.0, 0)


def _limited(bench: LimitedBench, case: Case) -> dict[str, Any]:
    """A point under the rate limit: the sandbox refuses over it, the workers pace themselves."""
    bench.rps = RATE_LIMIT_RPS
    bench.reset(case.latency_ms)
    bench.svc.admin.set_faults({"rate_limit": {"rps": RATE_LIMIT_RPS}})
    result = bench.pipeline(case, "onboarded")
    refused = sum(1 for e in bench.svc.admin.journal() if e.get("status") == 429)
    return _figures(case, result, RATE_LIMIT_RPS, refused)


def _figures(case: Case, result: Any, rps: float, refused: int) -> dict[str, Any]:
    return {
        "latency_ms": case.latency_ms,
        "processes": case.processes,
        "threads": case.threads,
        "rate_limit": rps,
        "events_per_s": round(result.rate, 1),
        "cpu_ms_per_event": round(result.cpu.ms_per_unit.get("worker", float("nan")), 2),
        "other_load_cores": round(result.cpu.other_cores, 2),
        "partial": result.partial,
        "responses_429": refused,
    }


def measure(events: int) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    with services(with_redis=True) as svc:
        bench = LimitedBench(svc, cap_s=15.0)
        try:
            for latency, threads in THREADS.items():
                for processes in PROCESSES:
                    progress(f"{latency} ms, {processes} x {threads}")
                    points.append(_point(bench, Case(latency, processes, threads, events)))
            for processes in (1, 2):
                progress(f"rate limit {RATE_LIMIT_RPS:.0f}/s, {processes} x 32, 0 ms")
                case = Case(0, processes, 32, int(RATE_LIMIT_RPS * 8))
                points.append(_limited(bench, case))
        finally:
            bench.close()
    return points


def report(points: list[dict[str, Any]]) -> None:
    rows = [
        [
            f"{p['latency_ms']} ms",
            f"{p['processes']} x {p['threads']}",
            f"{p['rate_limit']:.0f}/s" if p["rate_limit"] else "-",
            f"{p['events_per_s']:.0f}" + (" (partial)" if p["partial"] else ""),
            f"{p['cpu_ms_per_event']:.2f}",
            str(p["responses_429"]),
            f"{p['other_load_cores']:.1f}",
        ]
        for p in points
    ]
    print_table(
        f"Scaling (client.onboarded, one create call per event; {os.cpu_count()} cores)",
        ["API latency", "processes x threads", "rate limit", "events/s", "worker CPU ms/event",
         "429s", "other load (cores)"],
        rows,
    )  # fmt: skip


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for latency in THREADS:
        line = [p for p in points if p["latency_ms"] == latency and not p["rate_limit"]]
        ax.plot(
            [p["processes"] for p in line],
            [p["events_per_s"] for p in line],
            marker="o",
            label=f"{latency} ms API latency ({THREADS[latency]} threads/process)",
        )
    limited = [p for p in points if p["rate_limit"]]
    if limited:
        ax.axhline(RATE_LIMIT_RPS, color="grey", linestyle="--", linewidth=1)
        ax.scatter(
            [p["processes"] for p in limited],
            [p["events_per_s"] for p in limited],
            marker="s",
            color="black",
            label=f"under a {RATE_LIMIT_RPS:.0f}/s API rate limit",
        )
    ax.set_xlabel("worker processes")
    ax.set_ylabel("events/s")
    ax.set_xticks(list(PROCESSES))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("subaccount-worker: events/s by worker processes (2-core machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "scaling benchmark")
    parser.add_argument("--replot", action="store_true", help="redraw from the JSON only")
    args = parser.parse_args()
    data = PNG.with_suffix(".json")
    if args.replot:
        points = json.loads(data.read_text())["points"]
    else:
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            del os.environ[key]
        started = time.monotonic()
        points = measure(300 if args.quick else 1500)
        took = time.monotonic() - started
        data.write_text(json.dumps({"took_s": round(took), "points": points}, indent=2) + "\n")
    report(points)
    plot(points, PNG)
    print(f"\nwrote {PNG} and {data}")
    return 0


if __name__ == "__main__":
    run_main(main)
