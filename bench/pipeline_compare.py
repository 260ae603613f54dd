"""This tree's pipeline against another checkout's, side by side on the same servers.

The two pipeline kinds of `bench.pipeline_bench` (`client.onboarded`, `invoice.paid`), this
tree's worker alternating with DIR's (`python -m worker.cli` with DIR first on PYTHONPATH), the
order swapped every round so an order effect falls on both. Each rate comes with the Lua calls
per event, which noise on a shared machine cannot blur: the cost of a change.

    git worktree add /tmp/base 72ef002
    python -m bench.pipeline_compare /tmp/base            # ~3 minutes
    python -m bench.pipeline_compare /tmp/base --quick
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import base_parser, print_table, progress, run_main, services
from bench.pipeline_bench import CASES, LABELS, QUICK_CASES, Bench, Case, Row
from worker.settings import ENV_PREFIX


def run_against_baseline(bench: Bench, case: Case, runs: int) -> Row:
    """Alternate this tree's pipeline runs with the baseline's, both kinds; which of the two
    goes first swaps every round, so an order effect falls on both."""
    row = Row(case)
    once = ("onboarded", "onboarded_base", "invoice", "invoice_base")
    swapped = ("onboarded_base", "onboarded", "invoice_base", "invoice")
    for kind in [kind for n in range(runs) for kind in (swapped if n % 2 else once)]:
        result = bench.run(kind, case)
        row.results[kind].append(result)
        progress(f"{case.label}: {LABELS[kind]} {result.describe()}")
    return row


def report_against_baseline(rows: Sequence[Row], baseline: Path) -> None:
    headers = ["case", "kind", "this ev/s", "runs", "baseline ev/s", "runs", "ratio",
               "worker CPU ms/event (this / baseline)"]  # fmt: skip
    table = []
    for row in rows:
        for kind in ("onboarded", "invoice"):
            this, base = row.figure(kind), row.figure(f"{kind}_base")
            cpu = f"{row.cpu(kind, 'worker'):.2f} / {row.cpu(f'{kind}_base', 'worker'):.2f}"
            table.append([row.case.label, kind, f"{this.median:.0f}", this.runs(),
                          f"{base.median:.0f}", base.runs(), f"{this.median / base.median:.3f}",
                          cpu])  # fmt: skip
    print_table(f"This tree against {baseline}: pipeline events/s", headers, table)


def main() -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "pipeline comparison")
    parser.add_argument("baseline", type=Path, help="another checkout whose worker to run")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 2)
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        del os.environ[key]  # the workers get exactly the settings given here
    started = time.monotonic()
    with services(with_redis=True) as svc:
        bench = Bench(svc, 3.0 if args.quick else 12.0, None, args.baseline)
        try:
            cases = QUICK_CASES if args.quick else CASES
            rows = [run_against_baseline(bench, case, runs) for case in cases]
        finally:
            bench.close()
    report_against_baseline(rows, args.baseline)
    print(f"\n{runs} run(s) per figure; took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
