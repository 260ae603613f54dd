"""How long Dramatiq's maintenance blocks Redis beside 1 million ledger keys, side by side: the
broker in the ledger's database (as before issue 21: BROKER_REDIS_DB = REDIS_URL's database)
and in its own (the default, BROKER_REDIS_DB=1).

Maintenance runs inside Dramatiq's dispatch script: for each dead worker (a heartbeat older than
the timeout, as every rollout or scale-down leaves) it runs `KEYS <ns>:__acks__.<worker>*`, which
walks the whole database it runs in. Redis runs one script at a time, so the script's duration is
how long every other client waits. Here: a private redis-server (DEBUG POPULATE writes the keys
in DB 0), `--dead-workers` dead workers with one unacknowledged message each, then one fetch with
maintenance forced; SLOWLOG (threshold 0) gives the script's duration in microseconds.

    .venv/bin/python -m bench.broker_maintenance_bench [--keys 1000000] [--dead-workers 5]

Figures on a shared 2-core machine vary with its load: compare within one run.
"""

from __future__ import annotations

import statistics
from typing import Any

import redis

from bench.common import base_parser, print_table, progress, run_main
from worker.dev.devservers import RedisServer
from worker.pipeline.broker import build_broker
from worker.settings import load_settings

QUEUE = "subaccount-events"


def maintenance_us(url: str, broker_db: int, dead_workers: int) -> tuple[int, int, int]:
    """Duration (µs) of one forced maintenance pass with `dead_workers` dead workers, how many
    messages it gave back and how many keys its KEYS walked, the broker in database
    `broker_db`."""
    settings = load_settings(
        redis_url=url, broker_redis_db=broker_db, heartbeat_timeout_ms=1000,
        maintenance_chance=1_000_000,  # every dispatch maintains
    )  # fmt: skip
    broker = build_broker(settings, redis.Redis.from_url(settings.broker_url()))
    client: Any = broker.client
    ns = broker.namespace
    for n in range(dead_workers):
        client.zadd(f"{ns}:__heartbeats__", {f"dead-{n}": 1})  # beat in 1970
        client.hset(f"{ns}:{QUEUE}.msgs", f"m{n}", "{}")
        client.sadd(f"{ns}:__acks__.dead-{n}.{QUEUE}", f"m{n}")
    scanned = int(client.dbsize())
    admin = redis.Redis.from_url(url)
    admin.config_set("slowlog-log-slower-than", 0)
    admin.slowlog_reset()
    broker.do_fetch(QUEUE, 0)
    entries: Any = admin.slowlog_get(64)
    admin.config_set("slowlog-log-slower-than", 10_000)
    scripts = [e for e in entries if e["command"].split()[0].upper() in (b"EVALSHA", b"EVAL")]
    given_back = int(client.llen(f"{ns}:{QUEUE}"))
    client.delete(f"{ns}:{QUEUE}", f"{ns}:{QUEUE}.msgs", f"{ns}:__heartbeats__")
    broker.close()
    admin.close()
    return max(int(e["duration"]) for e in scripts), given_back, scanned


def main() -> int:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--keys", type=int, default=1_000_000, help="ledger keys in DB 0")
    parser.add_argument("--dead-workers", type=int, default=5, help="dead workers per pass")
    args = parser.parse_args()
    keys = 10_000 if args.quick else args.keys
    runs = args.runs or (1 if args.quick else 3)
    server = RedisServer("--enable-debug-command", "local")
    server.start()
    try:
        admin = redis.Redis.from_url(server.url)
        progress(f"writing {keys} ledger keys (DEBUG POPULATE)")
        admin.execute_command("DEBUG", "POPULATE", keys, "saw:ledger:evt-")
        layouts = {"shared with the ledger (DB 0)": 0, "own database (DB 1, default)": 1}
        rows = []
        for name, db in layouts.items():
            figures, scanned = [], 0
            for run in range(runs):
                progress(f"{name}: run {run + 1}/{runs}")
                us, given_back, scanned = maintenance_us(server.url, db, args.dead_workers)
                if given_back != args.dead_workers:
                    raise SystemExit(f"maintenance gave back {given_back} of {args.dead_workers}")
                figures.append(us / 1000)
            median = statistics.median(figures)
            rows.append([name, str(scanned), f"{median:.2f}", f"{max(figures):.2f}",
                         f"{median / args.dead_workers:.2f}"])  # fmt: skip
        print_table(
            f"Dramatiq maintenance, {args.dead_workers} dead workers, {keys} ledger keys in DB 0"
            f" ({runs} runs; SLOWLOG duration of the dispatch script)",
            ["broker keys", "keys in its DB", "blocked ms (median)", "max", "ms per dead worker"],
            rows,
        )
        admin.close()
    finally:
        server.cleanup()
    return 0


if __name__ == "__main__":
    run_main(main)
