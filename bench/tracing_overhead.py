"""What tracing costs the pipeline: events/s and worker CPU per event with tracing off and on.

`bench.pipeline_bench`'s pipeline side (`client.onboarded`, one create call each; the same
servers, the same first-to-last measurement), alternating, the order swapped every round:

- off: the default (`SUBACCOUNT_WORKER_TRACING` unset: a span is one global read);
- on:  `SUBACCOUNT_WORKER_TRACING=true` with `OTEL_TRACES_EXPORTER=none` (every span made and
       ended by the SDK, none exported: the cost of tracing without an exporter's network work).

    python -m bench.tracing_overhead            # 4 rounds at 0 ms API latency (~1 minute)
    python -m bench.tracing_overhead --quick
"""

from __future__ import annotations

import os
import statistics

from bench.common import base_parser, print_table, progress, run_main, services
from bench.pipeline_bench import Bench, Case
from worker.settings import ENV_PREFIX


class TracingBench(Bench):
    """`Bench` whose workers trace (with no exporter) while `tracing` is set."""

    tracing = False

    def worker_env(self, log_level: str, name: str) -> dict[str, str]:
        env = super().worker_env(log_level, name)
        if self.tracing:
            env[f"{ENV_PREFIX}TRACING"] = "true"
            env["OTEL_TRACES_EXPORTER"] = "none"
        return env


def main() -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "tracing overhead")
    args = parser.parse_args()
    rounds = args.runs or (1 if args.quick else 4)
    case = Case(0, 1, 8, 400 if args.quick else 2000)
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX) or k.startswith("OTEL_")]:
        del os.environ[key]
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    with services(with_redis=True) as svc:
        bench = TracingBench(svc, cap_s=20.0)
        try:
            for n in range(rounds):
                for side in ("off", "on") if n % 2 == 0 else ("on", "off"):
                    progress(f"round {n + 1}: tracing {side}")
                    bench.tracing = side == "on"
                    result = bench.run("onboarded", case)
                    rates[side].append(result.rate)
                    cpu[side].append(result.cpu.ms_per_unit.get("worker", float("nan")))
        finally:
            bench.close()
    rows = [
        [side, " ".join(f"{r:.0f}" for r in rates[side]), f"{statistics.median(rates[side]):.0f}",
         f"{statistics.median(cpu[side]):.2f}"]
        for side in ("off", "on")
    ]  # fmt: skip
    print_table(
        f"Tracing cost, client.onboarded, 1 x 8, 0 ms API latency, {case.events} events per run",
        ["tracing", "events/s (runs)", "median", "worker CPU ms/event"],
        rows,
    )
    ratio = statistics.median(rates["on"]) / statistics.median(rates["off"])
    cpu_ratio = statistics.median(cpu["on"]) / statistics.median(cpu["off"])
    print(f"\non / off: events/s {ratio:.2f}x, worker CPU per event {cpu_ratio:.2f}x")
    return 0


if __name__ == "__main__":
    run_main(main)
