"""Replay benchmark: the enqueue side of replaying N dead letters in one command, against `send`
of the same N events, side by side in one run on a private Redis (issue 12: replay <= 1.5x send).

    python -m bench.replay_bench [--events 10000] [--rounds 3]

Each round: `subaccount-worker send FILE` (validate, enqueue), then the same events written as
dead letters (as the worker's finishing script does) with their clients' state, then
`subaccount-worker dead-letters replay --all --yes --json` (index the dead letters, plan each
one from its ledger and client state, then claim, move and enqueue in batches). Both are timed
as whole commands (process start included, as an operator runs them) and as in-process service
calls. Prints each round, the medians and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from handlers import examples as f
from handlers import username_for
from handlers.events import parse_event
from handlers.plan import ClientState, Lifecycle
from worker import keys
from worker.dev.devservers import RedisServer
from worker.ops.jobs import Runner, gc_paused
from worker.ops.plans import plan, select
from worker.pipeline.keyspace import Keyspace
from worker.pipeline.outcomes import DeadLetter
from worker.pipeline.publish import Publisher
from worker.settings import load_settings

QUEUE = "subaccount-events"


def make_events(n: int) -> list[dict[str, Any]]:
    """N invoices of N/10 onboarded clients."""
    return [
        f.invoice_paid(f"bench-{i % max(1, n // 10)}", f"INV-{i}", 1 + i % 50) for i in range(n)
    ]


def reset(client: redis.Redis) -> None:
    client.flushdb()


def write_dead_letters(client: redis.Redis, events: list[dict[str, Any]]) -> None:
    """The events as `retries_exhausted` dead letters, and their clients as onboarded."""
    now = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for n, event in enumerate(events):
        key = parse_event(event).key
        detail = "2 attempts; last: add_credits failed (HTTP 503): Server error"
        letter = DeadLetter(key, event, "retries_exhausted", detail, 2, now - 60_000, now + n,
                            step="add_credits")  # fmt: skip
        pipe.hset(keys.dead_letters("saw"), key, letter.encode())
        pipe.zadd(keys.dead_letter_index("saw"), {key: now + n})
    pipe.hset(keys.dead_letter_counts("saw"), "retries_exhausted", len(events))
    for client_id in {str(e["subject"]) for e in events}:
        state = ClientState(client_id=client_id, lifecycle=Lifecycle.ACTIVE,
                            username=username_for(client_id))  # fmt: skip
        pipe.set(keys.client("saw", client_id), state.model_dump_json())
    pipe.execute()


def queued(client: redis.Redis) -> int:
    queue = keys.dramatiq_queue("saw", QUEUE)
    return int(Keyspace.default().read(client, lambda p: p.llen(queue))[0])


def redis_cpu_s(client: redis.Redis) -> float:
    info: Any = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_command(url: str, *args: str) -> tuple[float, str]:
    env = {
        **os.environ,
        "SUBACCOUNT_WORKER_REDIS_URL": url,
        "SUBACCOUNT_WORKER_LOG_LEVEL": "WARNING",
    }
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "worker.cli", *args], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({done.returncode}): {done.stderr[-500:]}")
    return took, done.stdout


def one_round(
    url: str, client: redis.Redis, events: list[dict[str, Any]], path: Path
) -> dict[str, float]:
    settings = load_settings(redis_url=url, log_level="WARNING")
    n = len(events)
    reset(client)
    cpu = children_cpu_s() + redis_cpu_s(client)
    send_cmd, _ = timed_command(url, "send", str(path))
    send_cpu = children_cpu_s() + redis_cpu_s(client) - cpu
    assert queued(client) == n, queued(client)

    reset(client)
    write_dead_letters(client, events)
    cpu = children_cpu_s() + redis_cpu_s(client)
    replay_cmd, out = timed_command(url, "dead-letters", "replay", "--all", "--yes", "--json")
    replay_cpu = children_cpu_s() + redis_cpu_s(client) - cpu
    result = json.loads(out)
    assert result["replayed"] == n, result
    assert queued(client) == n

    reset(client)
    start = time.perf_counter()
    Publisher(client, settings).publish_many(events)
    send_call = time.perf_counter() - start

    reset(client)
    write_dead_letters(client, events)
    start = time.perf_counter()
    with gc_paused():  # as the CLI does
        the_plan = plan(client, "saw", select(client, "saw"))
        Runner(client, "saw", Publisher(client, settings)).run(the_plan, operator="bench")
    replay_call = time.perf_counter() - start
    assert queued(client) == n
    return {"send_cmd": send_cmd, "replay_cmd": replay_cmd, "send_call": send_call,
            "replay_call": replay_call, "send_cpu": send_cpu, "replay_cpu": replay_cpu}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    events = make_events(args.events)
    server = RedisServer().start()
    client = redis.Redis.from_url(server.url)
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
        try:
            for number in range(1, args.rounds + 1):
                r = one_round(server.url, client, events, path)
                rounds.append(r)
                print(f"round {number}: send {r['send_cmd']:.2f} s, replay {r['replay_cmd']:.2f} s "
                      f"({r['replay_cmd'] / r['send_cmd']:.2f}x, commands); "
                      f"send {r['send_call']:.2f} s, replay {r['replay_call']:.2f} s "
                      f"({r['replay_call'] / r['send_call']:.2f}x, in-process); "
                      f"CPU {r['send_cpu']:.2f} s vs {r['replay_cpu']:.2f} s")  # fmt: skip
        finally:
            client.close()
            server.stop()
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    # The machine's load moves between rounds; each round's ratio compares like with like.
    ratio = {kind: statistics.median(r[f"replay_{kind}"] / r[f"send_{kind}"] for r in rounds)
             for kind in ("cmd", "call", "cpu")}  # fmt: skip
    print(f"\n{args.events} events, median of {args.rounds} rounds (ratio: median of rounds'):")
    print(f"  command     send {med['send_cmd']:.2f} s   replay {med['replay_cmd']:.2f} s   "
          f"ratio {ratio['cmd']:.2f}x")  # fmt: skip
    print(f"  in-process  send {med['send_call']:.2f} s   replay {med['replay_call']:.2f} s   "
          f"ratio {ratio['call']:.2f}x")  # fmt: skip
    print(f"  CPU of the commands and Redis (load-independent): send {med['send_cpu']:.2f} s   "
          f"replay {med['replay_cpu']:.2f} s   ratio {ratio['cpu']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
