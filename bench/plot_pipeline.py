"""Plot events/s of the pipeline and of the bare Dramatiq actor against the API's latency.

Runs `bench.pipeline_bench`'s two sides (its `Bench`, same servers, same measurement: first to
last completion) at a few sandbox latencies with one processes x threads, then draws one PNG:
two lines, events/s against latency. The figures are also printed and written as JSON beside
the PNG, so `--replot` redraws it without running anything.

    python -m bench.plot_pipeline            # ~3 minutes; writes docs/pipeline_throughput.png
    python -m bench.plot_pipeline --quick    # one short run per point (~1 minute)
    python -m bench.plot_pipeline --replot   # redraw from docs/pipeline_throughput.json
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, base_parser, print_table, run_main, services
from bench.pipeline_bench import Bench, Case
from worker.settings import ENV_PREFIX

LATENCIES_MS = (0, 25, 50, 100)
PROCESSES, THREADS = 1, 32
EVENTS, QUICK_EVENTS = 1200, 400
CAP_S = 10.0  # a run longer than this stops and counts what it has (marked partial)
SIDES = {"bare": "bare Dramatiq actor (one httpx call)", "onboarded": "pipeline (client.onboarded)"}
PNG = REPO / "docs" / "pipeline_throughput.png"


def measure(runs: int, events: int) -> tuple[dict[str, dict[int, list[float]]], list[float]]:
    """events/s of each side at each latency (`runs` alternating runs per point), and the other
    load on the machine (cores) during each run."""
    rates: dict[str, dict[int, list[float]]] = {side: {} for side in SIDES}
    other_load: list[float] = []
    with services(with_redis=True) as svc:
        bench = Bench(svc, CAP_S)
        try:
            for latency in LATENCIES_MS:
                case = Case(latency, PROCESSES, THREADS, events)
                for _ in range(runs):
                    for side in SIDES:
                        result = bench.run(side, case)
                        rates[side].setdefault(latency, []).append(round(result.rate, 1))
                        other_load.append(round(result.cpu.other_cores, 1))
                        print(f"  .. {case.label}: {side} {result.describe()}", flush=True)
        finally:
            bench.close()
    return rates, other_load


def plot(data: dict[str, Any], path: Path) -> None:
    """Draw the two lines (median of the runs at each latency) into `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates: dict[str, dict[str, list[float]]] = data["rates"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    medians = {
        side: {int(ms): statistics.median(v) for ms, v in rates[side].items()} for side in SIDES
    }
    top = max(max(v) for side in SIDES for v in rates[side].values())
    for side, label in SIDES.items():
        xs = sorted(medians[side])
        ys = [medians[side][x] for x in xs]
        (line,) = ax.plot(xs, ys, marker="o", label=label)
        runs = [rates[side][str(x)] for x in xs]
        if any(len(v) > 1 for v in runs):  # the spread of the runs, lightly
            lows, highs = [min(v) for v in runs], [max(v) for v in runs]
            ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.15, linewidth=0)
        for x, y in zip(xs, ys, strict=True):
            higher = all(y >= medians[other][x] for other in SIDES if other != side)
            dy = 6 if higher else -13  # the higher figure above its point, the lower below
            ax.annotate(f"{y:.0f}", (x, y), textcoords="offset points", xytext=(0, dy), ha="center")
    ax.set_xlabel("Subaccount API latency (ms, set in the sandbox)")
    ax.set_ylabel("events per second")
    ax.set_xticks(list(LATENCIES_MS))
    ax.set_ylim(0, top * 1.35)
    ax.set_xlim(-8, LATENCIES_MS[-1] + 8)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", ncol=2, fontsize=9, frameon=False)
    load = data["other_load_cores"]
    ax.set_title(
        f"Pipeline vs bare actor, {data['processes']} process x {data['threads']} threads, "
        f"median of {data['runs']} run(s) (band: min-max)\n"
        f"{data['machine']}, {data['date']}: other jobs used {min(load):.1f}-{max(load):.1f} "
        "cores meanwhile",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "pipeline plot")
    parser.add_argument("--replot", action="store_true", help="redraw from the saved JSON")
    parser.add_argument("--out", type=Path, default=PNG, help=f"the PNG (default {PNG})")
    args = parser.parse_args()
    data_path = args.out.with_suffix(".json")
    if args.replot:
        plot(json.loads(data_path.read_text()), args.out)
        print(f"wrote {args.out}")
        return 0
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        del os.environ[key]  # the workers get exactly the settings the benchmark gives
    runs = args.runs or (1 if args.quick else 2)
    started = time.monotonic()
    rates, other_load = measure(runs, QUICK_EVENTS if args.quick else EVENTS)
    data = {
        "machine": f"{os.cpu_count()}-core {platform.machine()} (shared)",
        "date": time.strftime("%Y-%m-%d"),
        "processes": PROCESSES,
        "threads": THREADS,
        "runs": runs,
        "rates": rates,
        "other_load_cores": other_load,
    }
    rows = []
    for ms in LATENCIES_MS:
        bare, pipeline = (statistics.median(rates[side][ms]) for side in SIDES)
        rows.append([f"{ms} ms", f"{bare:.0f}", f"{pipeline:.0f}", f"{pipeline / bare:.2f}x"])
    print_table("events/s (median)", ["API latency", "bare", "pipeline", "ratio"], rows)
    data_path.write_text(json.dumps(data, indent=1) + "\n")
    plot(json.loads(data_path.read_text()), args.out)  # as --replot reads it (keys are strings)
    print(f"wrote {args.out} and {data_path}; took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
