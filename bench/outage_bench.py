"""Outage benchmark (issue 22): an API outage of every call, with and without the circuit breaker.

    python -m bench.outage_bench [--outage-s 60] [--invoices 1000] [--clients 200] [--quick]
                                 [--down add_credits] [--modes today,breaker]

Each mode runs on its own Redis and sandbox with two real worker processes (`subaccount-worker
worker`, 1 process x 8 threads each): onboard the clients, then make every API call (or, with
`--down OP`, every call of one operation: `add_credits` is an outage of every grant) answer 503
(`error_next`, counted by the sandbox) for `--outage-s` while invoices arrive at a steady rate,
then heal the API and wait until every invoice has an outcome. Printed side by side:

- calls to the down API per second (all calls answered 503: the sandbox's own count), on average
  and at the worst 5-second interval;
- dead letters, and invoices applied (each granted exactly once: the sandbox journal);
- time to drain after recovery: from healing the API to the last invoice's outcome.

"today" is the code with the breaker off (`CIRCUIT_ENABLED=false`) and the retry defaults of
before issue 22 (8 attempts, 0.5 s .. 300 s); "breaker" uses the defaults of now. The issue's
goal at full scale: a 10-minute outage -> 0 dead letters, <= 1 call/s to the down API, every
event applied within 30 s of recovery (`--outage-s 600`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis

from bench.common import API_KEY, Proc, group_cpu_s, services
from handlers import examples as f
from worker import keys
from worker.ops.outcomes import decode_entry
from worker.pipeline.publish import Publisher
from worker.sandbox import SandboxAdmin
from worker.settings import load_settings

MILLION = 1_000_000
TODAY = {
    "CIRCUIT_ENABLED": "false",
    "RETRY_MAX_ATTEMPTS": "8",
    "RETRY_MIN_BACKOFF_MS": "500",
    "RETRY_MAX_BACKOFF_MS": "300000",
}
BREAKER = {"CIRCUIT_ENABLED": "true"}


@dataclass
class Result:
    mode: str
    outage_s: float
    down_calls: int
    worst_5s_rate: float
    probes: int
    invoices: int
    applied: int
    dead_letters: int
    granted: int
    drain_s: float | None  # healing -> last invoice outcome; None if some never finished
    worker_cpu_s: float = 0.0  # both workers' CPU during the outage (holding costs this)
    redis_commands: int = 0  # Redis commands during the outage
    drain_p50_s: float | None = None  # healing -> half of the invoices finished
    drain_p90_s: float | None = None

    @property
    def rate(self) -> float:
        return self.down_calls / self.outage_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--modes", default="today,breaker", help="today, breaker or both")
    parser.add_argument("--down", default="", help="only this operation fails (default: all)")
    parser.add_argument("--quick", action="store_true", help="20 s, 200 invoices, 50 clients")
    args = parser.parse_args()
    if args.quick:
        args.outage_s, args.invoices, args.clients = 20.0, 200, 50
    what = f"every {args.down} call" if args.down else "every call"
    print(f"outage of {what} for {args.outage_s:.0f} s, {args.invoices} invoices of "
          f"{args.clients} clients, 2 workers x {args.threads} threads")  # fmt: skip
    modes = {"today": TODAY, "breaker": BREAKER}
    results = [run(mode, modes[mode], args) for mode in args.modes.split(",")]
    print_table(results)
    return 0


def run(mode: str, extra: dict[str, str], args: argparse.Namespace) -> Result:
    with services(with_redis=True) as svc:
        assert svc.redis is not None
        env = {
            "SUBACCOUNT_WORKER_REDIS_URL": svc.redis.url,
            "SUBACCOUNT_WORKER_API_BASE_URL": svc.api_url,
            "SUBACCOUNT_WORKER_API_KEY": API_KEY,
            "SUBACCOUNT_WORKER_METRICS_PORT": "0",
            "SUBACCOUNT_WORKER_LOG_FORMAT": "json",
            "SUBACCOUNT_WORKER_LOG_LEVEL": "WARNING",
            **{f"SUBACCOUNT_WORKER_{k}": v for k, v in extra.items()},
        }
        argv = [sys.executable, "-m", "worker.cli", "worker", "--processes", "1",
                "--threads", str(args.threads)]  # fmt: skip
        workers = [Proc(f"worker-{n}", argv, env=env, output=svc.workdir / f"w{n}.log").start()
                   for n in range(2)]  # fmt: skip
        client = redis.Redis.from_url(svc.redis.url)
        try:
            pids = [proc.pid for proc in workers]
            return outage(mode, client, svc.admin, svc.redis.url, svc.api_url, args, pids)
        finally:
            for proc in workers:
                proc.stop()
            client.close()


def outage(
    mode: str,
    client: redis.Redis,
    admin: SandboxAdmin,
    redis_url: str,
    api_url: str,
    args: argparse.Namespace,
    worker_pids: list[int],
) -> Result:
    settings = load_settings(redis_url=redis_url, api_base_url=api_url, api_key=API_KEY)
    publisher = Publisher(client, settings)
    clients = [f"ob-{n:04d}" for n in range(args.clients)]
    onboard = [f.onboarded(c) for c in clients]
    publisher.publish_many(onboard)
    watch = OutcomeWatch(client)
    watch.wait({e["id"] for e in onboard}, timeout_s=120)
    print(f"[{mode}] {len(clients)} clients onboarded; outage starts")

    invoices = [f.invoice_paid(clients[n % len(clients)], f"INV-{n:06d}", 1 + n % 50)
                for n in range(args.invoices)]  # fmt: skip
    spec = {"error_next": MILLION, "error_status": 503}
    admin.set_faults({"operations": {args.down: spec}} if args.down else {"default": spec})

    def left() -> int:
        faults = admin.faults()
        return int((faults["operations"][args.down] if args.down else faults["default"])[
            "error_next"])  # fmt: skip

    cpu_before = sum(group_cpu_s(pid) for pid in worker_pids)
    commands_before = int(client.info("stats")["total_commands_processed"])
    started = time.monotonic()
    worst, last_left, last_at, sent = 0.0, MILLION, started, 0
    while (elapsed := time.monotonic() - started) < args.outage_s:
        due = min(len(invoices), int(len(invoices) * elapsed / args.outage_s) + 1)
        if due > sent:
            publisher.publish_many(invoices[sent:due])
            sent = due
        if time.monotonic() - last_at >= 5.0:
            now_left = left()
            worst = max(worst, (last_left - now_left) / (time.monotonic() - last_at))
            last_left, last_at = now_left, time.monotonic()
        time.sleep(0.05)  # pacing the publisher: a benchmark, not a test
    publisher.publish_many(invoices[sent:])
    down_calls = MILLION - left()
    outage_s = time.monotonic() - started
    worker_cpu_s = sum(group_cpu_s(pid) for pid in worker_pids) - cpu_before
    redis_commands = int(client.info("stats")["total_commands_processed"]) - commands_before
    probes = _probes(client)
    admin.set_faults({})
    healed = time.time()
    print(f"[{mode}] API healed after {outage_s:.0f} s; waiting for every invoice")

    found = watch.wait({e["id"] for e in invoices}, timeout_s=max(120.0, args.outage_s))
    kinds = Counter(o["outcome"] for o in found.values())
    finished = [int(o["at_ms"]) / 1000 for o in found.values()]
    complete = len(found) == len(invoices)
    granted = sum(1 for e in admin.journal(operation="add_credits") if e["applied"])
    return Result(
        mode=mode,
        outage_s=outage_s,
        down_calls=down_calls,
        worst_5s_rate=worst,
        probes=probes,
        invoices=len(invoices),
        applied=kinds.get("applied", 0),
        dead_letters=int(client.hlen(keys.dead_letters("saw"))),
        granted=granted,
        drain_s=max(0.0, max(finished) - healed) if complete and finished else None,
        worker_cpu_s=worker_cpu_s,
        redis_commands=redis_commands,
        drain_p50_s=_quantile(finished, 0.5, healed),
        drain_p90_s=_quantile(finished, 0.9, healed),
    )


def _quantile(finished: list[float], q: float, healed: float) -> float | None:
    """Seconds from healing until `q` of the invoices had finished."""
    if not finished:
        return None
    ordered = sorted(finished)
    return max(0.0, ordered[min(len(ordered) - 1, int(q * len(ordered)))] - healed)


def _probes(client: redis.Redis) -> int:
    """Probes let through by every open circuit (0 with the breaker off)."""
    total = 0
    for op in client.zrange(keys.circuit_open("saw"), 0, -1):
        total += int(client.hget(keys.circuit("saw", op.decode()), "probes") or 0)
    return total


class OutcomeWatch:
    """Reads the outcome stream once, in order, keeping each event's first outcome."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._last = "0-0"
        self.first: dict[str, dict[str, Any]] = {}

    def wait(self, wanted: set[str], timeout_s: float) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while not wanted <= set(self.first) and time.monotonic() < deadline:
            reply: Any = self._client.xread({keys.outcomes("saw"): self._last}, count=1000,
                                            block=500)  # fmt: skip
            for _stream, entries in reply:
                for entry_id, fields in entries:
                    self._last = entry_id
                    record = decode_entry(fields)
                    self.first.setdefault(record.get("event_id", ""), record)
        return {k: v for k, v in self.first.items() if k in wanted}


def print_table(results: list[Result]) -> None:
    rows = [
        ("calls/s to the down API (average)", lambda r: f"{r.rate:.2f}"),
        ("calls/s, worst 5 s", lambda r: f"{r.worst_5s_rate:.2f}"),
        ("calls answered 503 in all", lambda r: str(r.down_calls)),
        ("probes (breaker)", lambda r: str(r.probes)),
        ("workers' CPU during it (% of a core)",
         lambda r: f"{100 * r.worker_cpu_s / r.outage_s:.0f}"),
        ("Redis commands/s during it", lambda r: f"{r.redis_commands / r.outage_s:.0f}"),
        ("dead letters", lambda r: str(r.dead_letters)),
        ("invoices applied", lambda r: f"{r.applied} of {r.invoices}"),
        ("grants in the sandbox journal", lambda r: str(r.granted)),
        ("drain after recovery (s)",
         lambda r: "-" if r.drain_s is None else f"{r.drain_s:.1f}"),
        ("... half / 90 % of the invoices (s)",
         lambda r: f"{r.drain_p50_s or 0:.1f} / {r.drain_p90_s or 0:.1f}"),
    ]  # fmt: skip
    width = max(len(label) for label, _ in rows)
    print()
    print(" " * width + "".join(f"{r.mode:>14}" for r in results))
    for label, cell in rows:
        print(label.ljust(width) + "".join(f"{cell(r):>14}" for r in results))
    print("(shared 2-core machine: rates and times are noisy; counts are exact)")


if __name__ == "__main__":
    raise SystemExit(main())
