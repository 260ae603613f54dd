"""Redis memory per client, per ledger entry, per dead letter and per outcome kept: the figures
behind deploy/README.md's `maxmemory` formula.

The real pipeline runs in-process against a private redis-server and the sandbox (its own
process): C clients are onboarded and paid I invoices each; then D paid invoices are reported
again with other credits (each dead-lettered as a conflict). Every key is then measured with
`MEMORY USAGE` and grouped by its family (the segment after the prefix: `ledger`, `client`,
`dead`, `outcomes`, ...); each family's bytes are divided by what it counts.

    python -m bench.redis_capacity            # 1,000 clients x 5 invoices, 500 dead letters
    python -m bench.redis_capacity --quick    # 200 clients x 2 invoices, 100 dead letters
"""

from __future__ import annotations

import collections
import os
import time
from typing import Any

import redis

from bench.common import API_KEY, Services, base_parser, print_table, progress, run_main, services
from handlers import examples
from tests.pipeline_support import pipeline_settings, running_pipeline
from worker.log import configure_logging
from worker.pipeline.publish import Publisher
from worker.settings import load_settings

PREFIX = "saw"


def _publish(svc: Services, events: list[dict[str, Any]]) -> None:
    settings = load_settings(redis_url=svc.redis_url, key_prefix=PREFIX)
    client = redis.Redis.from_url(svc.redis_url)
    Publisher(client, settings).publish_many(events)
    client.close()


def _wait_outcomes(client: redis.Redis, count: int) -> None:
    deadline = time.monotonic() + 600
    while client.xlen(f"{PREFIX}:outcomes") < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {client.xlen(f'{PREFIX}:outcomes')} of {count} outcomes")
        time.sleep(0.2)


def family(key: str) -> str:
    """`saw:ledger:abc` → `ledger`; `saw:dead:ix:client:x` → `dead:ix`; Dramatiq's → `dramatiq`."""
    parts = key.split(":")
    if len(parts) < 2 or parts[0] != PREFIX:
        return "other"
    if parts[1] in ("dead", "credits", "ops") and len(parts) > 2:
        return f"{parts[1]}:{parts[2]}"
    return parts[1]


def measure(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """Family → (keys, bytes by MEMORY USAGE)."""
    sizes: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for raw in client.scan_iter(count=1000):
        key = raw.decode()
        used = client.memory_usage(raw, samples=0) or 0
        entry = sizes[family(key)]
        entry[0] += 1
        entry[1] += int(used)
    return {name: (v[0], v[1]) for name, v in sizes.items()}


def _report(
    sizes: dict[str, tuple[int, int]],
    clients: int,
    invoices: int,
    dead: int,
    outcomes: int,
    used_memory: int,
) -> None:
    """One row per family, then the per-unit figures the sizing formula uses."""
    print_table(
        f"Redis memory by key family ({clients} clients x {invoices} invoices, {dead} dead "
        f"letters, {outcomes} outcomes; used_memory {used_memory / 1048576:.1f} MiB)",
        ["family", "keys", "KiB"],
        [
            [n, str(k), f"{b / 1024:.1f}"]
            for n, (k, b) in sorted(sizes.items(), key=lambda kv: -kv[1][1])
        ],
    )

    def total(*names: str) -> int:
        return sum(
            b for n, (_, b) in sizes.items() if any(n == x or n.startswith(x + ":") for x in names)
        )

    units = [
        ("per client (client, timeline, grants)", total("client", "timeline", "grants"), clients),
        (
            "per ledger entry (one per event, kept LEDGER_TTL_S)",
            total("ledger"),
            sizes.get("ledger", (1, 0))[0],
        ),
        (
            "per invoice, kept LEDGER_TTL_S (owner and amount keys)",
            total("business", "business-amount"),
            clients * invoices,
        ),
        (
            "per invoice, kept for good (the client's business-keys hash)",
            total("business-keys"),
            clients * invoices,
        ),
        ("per dead letter (record and indexes)", total("dead"), dead),
        ("per outcome kept (the stream)", total("outcomes"), outcomes),
    ]
    print_table(
        "Bytes per unit (MEMORY USAGE; sizing: sum of units x bytes, plus headroom)",
        ["unit", "bytes"],
        [[name, f"{used / count:.0f}" if count else "-"] for name, used, count in units],
    )


def main() -> int:
    parser = base_parser(__doc__ or "")
    args = parser.parse_args()
    clients, invoices, dead = (200, 2, 100) if args.quick else (1000, 5, 500)
    dead = min(dead, clients)
    with services(with_redis=True) as svc:
        settings = pipeline_settings(
            svc.redis_url, svc.api_url, API_KEY, key_prefix=PREFIX, worker_threads=8,
            log_level="WARNING", log_format="json",
        )  # fmt: skip
        configure_logging(settings, stream=open(os.devnull, "w"))  # noqa: SIM115
        client = redis.Redis.from_url(svc.redis_url)
        with running_pipeline(settings, threads=8):
            progress(f"{clients} clients onboarded")
            _publish(svc, [examples.onboarded(f"cap-{c}", t=0) for c in range(clients)])
            _wait_outcomes(client, clients)
            progress(f"{clients * invoices} invoices")
            _publish(
                svc,
                [
                    examples.invoice_paid(f"cap-{c}", f"INV-{c}-{i}", 100, t=60 + i)
                    for c in range(clients)
                    for i in range(invoices)
                ],
            )
            _wait_outcomes(client, clients * (1 + invoices))
            progress(f"{dead} dead letters (paid invoices reported again with other credits)")
            _publish(
                svc,
                [examples.invoice_paid(f"cap-{d}", f"INV-{d}-0", 999, t=900) for d in range(dead)],
            )
            _wait_outcomes(client, clients * (1 + invoices) + dead)
        sizes = measure(client)
        outcomes = client.xlen(f"{PREFIX}:outcomes")
        info = client.info("memory")
        client.close()
    _report(sizes, clients, invoices, dead, outcomes, info["used_memory"])
    return 0


if __name__ == "__main__":
    run_main(main)
