"""The Redis side of one grant's attempt, this code's scripts beside an earlier revision's.

    python -m bench.attempt_scripts_cost [--rev 72ef002] [--events 5000] [--rounds 5]

Each round runs, for `--events` fresh `invoice.paid` events of distinct clients, the three
calls of an attempt that grants (`open`, `begin_step`, `finish` with the done record), first
with the scripts of `--rev` (read with `git show`), then with this checkout's (which also keep
the client's business keys and a dead letter's truth), on one private redis-server, one
connection, in-process, timing only the three calls. Prints µs per attempt per round and the
medians. It isolates what the
per-client business keys add to the normal path; the whole pipeline is `bench.pipeline_bench`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from typing import Any

import redis

from handlers import examples as f
from handlers.events import parse_event
from handlers.outcomes import Outcome
from handlers.plan import AddCredits
from tests.pipeline_support import parsed_plan_steps
from worker.dev.devservers import RedisServer
from worker.pipeline.attempts import AttemptStore, BeginStep, Finish
from worker.pipeline.ledger import StepRecord, StepState
from worker.pipeline.outcomes import outcome_record
from worker.pipeline.results import AttemptInfo
from worker.pipeline.scripts import LuaScript

SCRIPTS = ["open", "begin_step", "finish"]


def _old_scripts(rev: str) -> dict[str, LuaScript]:
    def show(name: str) -> str:
        path = f"worker/pipeline/lua/{name}.lua"
        return subprocess.run(["git", "show", f"{rev}:{path}"], check=True, capture_output=True,
                              text=True).stdout  # fmt: skip

    return {name: LuaScript(show(name)) for name in SCRIPTS}


class OldFinishArgs(AttemptStore):
    """The earlier `finish` takes no grant arguments and one key fewer: drop them."""

    def _run(self, script: LuaScript, keys_: list[str], args: list[Any]) -> Any:
        if script.source.startswith("-- Finish an attempt"):
            keys_, args = keys_[:9], args[:12] + args[15:]
        elif "grants_kept = tonumber(ARGV[14])" in script.source:
            keys_, args = keys_[:6], args[:14]
        return super()._run(script, keys_, args)


def _prepared(round_no: int, events: int, label: str) -> list[tuple[Any, ...]]:
    """The events of a round with their grants, built before the clock starts."""
    prepared = []
    for n in range(events):
        raw = f.invoice_paid(f"{label}-{round_no}-{n}", f"INV-{label}-{round_no}-{n}", 10)
        event = parse_event(raw)
        (grant,) = parsed_plan_steps(event)
        assert isinstance(grant, AddCredits)
        prepared.append((raw, event, grant))
    return prepared


def _round(store: AttemptStore, prepared: list[tuple[Any, ...]]) -> tuple[float, float]:
    """µs per attempt spent in the three Redis calls (wall clock), and the server's CPU µs per
    attempt in the scripts (`INFO commandstats`, the steadier figure on a busy machine)."""
    client: redis.Redis = store._redis
    client.config_resetstat()
    spent = 0.0
    for n, (raw, event, grant) in enumerate(prepared):
        token = f"t{n}"
        now = int(time.time() * 1000)
        record = StepRecord(StepState.IN_PROGRESS, token, now, {"balance": 0})
        begin = BeginStep(event.key, event.client_id, token, "add_credits", record,
                          grant.business_key, 10)  # fmt: skip
        done = ("add_credits", StepRecord(StepState.DONE, token, now, result={"balance": 10}))
        outcome = outcome_record(event.key, raw, Outcome.APPLIED, None, AttemptInfo(), now)
        finish = Finish(outcome, None, None, grant)
        started = time.perf_counter()
        store.open(event.key, event.client_id, token)
        store.begin_step(begin)
        store.finish(event.key, event.client_id, token, finish, now, done)
        spent += time.perf_counter() - started
    stats = client.info("commandstats")
    server_us = sum(stats.get(f"cmdstat_{c}", {}).get("usec", 0) for c in ("evalsha", "eval"))
    return spent / len(prepared) * 1e6, server_us / len(prepared)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rev", default="72ef002")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import worker.pipeline.attempts as attempts

    new = {name: getattr(attempts, f"_{name.upper()}") for name in SCRIPTS}
    old = _old_scripts(args.rev)
    redis_server = RedisServer().start()
    try:
        client = redis.Redis.from_url(redis_server.url)
        store_args: dict[str, Any] = {"lock_ttl_ms": 5000, "ledger_ttl_s": 3600,
                                      "outcome_maxlen": 10_000}  # fmt: skip
        old_store, new_store = (
            OldFinishArgs(client, "saw", **store_args),
            AttemptStore(client, "saw", **store_args),
        )
        times: dict[str, list[float]] = {"old": [], "new": []}
        server: dict[str, list[float]] = {"old": [], "new": []}
        print(f"{'':>5} {'wall µs per attempt':>24} {'Redis CPU µs per attempt':>26}")
        print(f"{'round':>5} {args.rev:>12} {'this':>11} {args.rev:>13} {'this':>12}")
        for round_no in range(args.rounds):
            for label, store, scripts in (("old", old_store, old), ("new", new_store, new)):
                for name in SCRIPTS:
                    setattr(attempts, f"_{name.upper()}", scripts[name])
                prepared = _prepared(round_no, args.events, label)
                wall, cpu = _round(store, prepared)
                times[label].append(wall)
                server[label].append(cpu)
                client.flushall()
            print(f"{round_no:>5} {times['old'][-1]:>12.1f} {times['new'][-1]:>11.1f} "
                  f"{server['old'][-1]:>13.1f} {server['new'][-1]:>12.1f}")  # fmt: skip
        medians = [statistics.median(d[k]) for d in (times, server) for k in ("old", "new")]
        print(f"{'median':>6} {medians[0]:>11.1f} {medians[1]:>11.1f} {medians[2]:>13.1f} "
              f"{medians[3]:>12.1f}  (Redis CPU {medians[3] / medians[2] - 1:+.1%})")  # fmt: skip
    finally:
        redis_server.cleanup()


if __name__ == "__main__":
    main()
