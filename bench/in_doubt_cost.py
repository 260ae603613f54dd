"""What one call in doubt costs: the client's next event waits for the window; others do not.

A real worker process (`subaccount-worker worker`), its own Redis and the sandbox on loopback.
Client `doubt` gets a suspension whose disable the sandbox applies `late_ms` after the read
timeout (fault `late`); once that call is in doubt (its mark is in Redis), a `client.updated`
of `doubt` and one of each of `others` other clients are published together. Printed: from
publishing to outcome (`at_ms`), the doubted client's update against the other clients'
updates (median, p95, max): the first waits for the rest of the window (it was published when
the read timeout fired).

    python -m bench.in_doubt_cost                 # settle 2 s, read timeout 0.5 s, 200 others
    python -m bench.in_doubt_cost --settle 5 --others 500
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import redis

from bench.common import API_KEY, Proc, print_table, run_main, services
from handlers import examples
from worker import keys
from worker.ops.outcomes import read_outcomes
from worker.pipeline.publish import Publisher
from worker.settings import ENV_PREFIX, load_settings

PREFIX = "saw"


def _env(redis_url: str, api_url: str, settle_s: float, read_s: float) -> dict[str, str]:
    values = {
        "REDIS_URL": redis_url, "API_BASE_URL": api_url, "API_KEY": API_KEY,
        "KEY_PREFIX": PREFIX, "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json", "METRICS_PORT": "0",
        "API_SETTLE_S": str(settle_s), "API_READ_TIMEOUT_S": str(read_s),
        "LOCK_BUSY_DELAY_MS": "50",
    }  # fmt: skip
    return {f"{ENV_PREFIX}{key}": value for key, value in values.items()}


def _wait_for(client: redis.Redis, count: int, timeout_s: float = 120.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.xlen(keys.outcomes(PREFIX)) >= count:
            return read_outcomes(client, PREFIX)
        time.sleep(0.02)
    raise RuntimeError(f"fewer than {count} outcomes after {timeout_s} s")


def _wait_for_mark(client: redis.Redis, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not client.exists(keys.in_doubt(PREFIX, "doubt")):
        if time.monotonic() > deadline:
            raise RuntimeError("the suspension's disable never went in doubt")
        time.sleep(0.005)


def measure(settle_s: float, read_s: float, late_ms: int, others: int) -> dict[str, Any]:
    with services(with_redis=True) as svc:
        client = redis.Redis.from_url(svc.redis_url)
        settings = load_settings(redis_url=svc.redis_url, api_base_url=svc.api_url,
                                 api_key=API_KEY, key_prefix=PREFIX)  # fmt: skip
        publisher = Publisher(client, settings)
        worker = Proc(
            "worker",
            [sys.executable, "-m", "worker.cli", "worker", "--processes", "1", "--threads", "8"],
            env=_env(svc.redis_url, svc.api_url, settle_s, read_s),
            output=svc.workdir / "worker.log",
        )
        worker.start()
        try:
            names = ["doubt", *(f"other-{i:04d}" for i in range(others))]
            publisher.publish_many([examples.onboarded(name) for name in names])
            _wait_for(client, len(names))
            svc.admin.set_faults({"operations": {"disable": {"late_next": 1, "late_ms": late_ms}}})
            publisher.publish(examples.suspended("doubt", t=1))
            _wait_for_mark(client)  # the disable is in doubt now
            sent_ms = int(time.time() * 1000)
            doubted = examples.updated("doubt", t=2, email="new@doubt.example")
            updates = [examples.updated(n, t=2, email=f"{n}@new.example") for n in names[1:]]
            publisher.publish_many([doubted, *updates])
            records = _wait_for(client, len(names) * 2 + 1)
        finally:
            worker.stop()
            client.close()
    at = {r["event_id"]: int(r["at_ms"]) - sent_ms for r in records}
    theirs = sorted(at[e["id"]] for e in updates)
    return {
        "doubted": at[doubted["id"]],
        "median": statistics.median(theirs),
        "p95": theirs[int(len(theirs) * 0.95) - 1],
        "max": theirs[-1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--read-timeout", type=float, default=0.5)
    parser.add_argument("--late-ms", type=int, default=300)
    parser.add_argument("--others", type=int, default=200)
    args = parser.parse_args()
    got = measure(args.settle, args.read_timeout, args.late_ms, args.others)
    rows = [
        ["the doubted client's update", f"{got['doubted']}", "", ""],
        [f"{args.others} other clients' updates", f"{got['median']:.0f}", f"{got['p95']}",
         f"{got['max']}"],
    ]  # fmt: skip
    title = (f"ms from publish to outcome; window {args.settle} s after a {args.read_timeout} s "
             "read timeout")  # fmt: skip
    print_table(title, ["events", "median / value", "p95", "max"], rows)
    return 0


if __name__ == "__main__":
    run_main(main)
