"""`make chaos`: the project's own Jepsen-style run, checked against an oracle.

It starts its own Redis (AOF on), the sandbox with faults (5xx, commit-then-drop, latency with
jitter, a 429 threshold, and a slice of calls of every kind applied after the client's read
timeout: `late`) and sending on, two worker processes behind a tight client-side rate limit
and the ingress, all on loopback. Out-of-band top-ups of other amounts hit random subaccounts.
It sends a seeded scenario (`bench.chaos_scenario`) through the ingress and `send` while it
SIGKILLs workers (restarting them), restarts Redis once and pauses the API for a few seconds.
Then it waits until the queue is drained (every message acknowledged, not merely quiet: a killed
worker's messages come back only after the heartbeat timeout) and checks, against the in-order
fold of the pure handlers (`worker.dev.oracle`): every client's final remote state, each grant
applied exactly once (the sandbox journal), one outcome per event, dead letters only where the
oracle expects them, and zero `ambiguous_outcome`. It prints a table and exits 1 on any
violation. Everything stops by itself; nothing but loopback is touched.

    python -m bench.chaos              # the full run (~1,000 events, 100 clients, 5 kills)
    python -m bench.chaos --small      # what `make test` runs (tests/e2e/test_chaos.py)
    python -m bench.chaos --settle 0   # no in-doubt window: late effects are missed, it FAILS
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.chaos_check import Verdict, check
from bench.chaos_config import ChaosConfig, faults
from bench.chaos_scenario import Scenario, build
from bench.common import API_KEY, Proc, print_table, progress, services
from worker import keys
from worker.dev.devservers import RedisServer, free_port, wait_until
from worker.pipeline.keyspace import Keyspace
from worker.sandbox.client import SandboxAdminError

PREFIX = "saw"
QUEUE = "subaccount-events"
INGRESS_TOKEN = "chaos-ingress-token-not-a-secret"  # noqa: S105 - a loopback-only fixture


@dataclass
class Chaos:
    """What was done to the system during the run."""

    kills: int = 0
    redis_restarts: int = 0
    api_pauses: int = 0
    top_ups: int = 0
    refused_at_door: int = 0
    resent_chunks: int = 0
    last_kill_at: float = 0.0


class Run:
    """The processes of one chaos run and the actions on them."""

    def __init__(self, cfg: ChaosConfig, stack: ExitStack, workdir: Path, sandbox_url: str) -> None:
        self.cfg = cfg
        self.workdir = workdir
        self.sandbox_url = sandbox_url
        self.redis = RedisServer("--appendonly", "yes", "--appendfsync", "everysec")
        stack.callback(self.redis.cleanup)
        self.redis.start()
        self.env = self._env()
        self.workers: list[Proc] = []
        self.worker_starts = 0
        self.ingress_port = free_port()
        self.ingress = Proc(
            "ingress",
            [sys.executable, "-m", "worker.cli", "ingress", "--port", str(self.ingress_port)],
            env=self.env,
            output=workdir / "ingress.log",
        )
        stack.callback(self.stop_workers)
        stack.callback(self.ingress.stop)
        self.chaos = Chaos()
        self.lock = threading.Lock()

    def _env(self) -> dict[str, str]:
        c = self.cfg
        return {
            "SUBACCOUNT_WORKER_REDIS_URL": self.redis.url,
            "SUBACCOUNT_WORKER_API_BASE_URL": f"{self.sandbox_url}/v6",
            "SUBACCOUNT_WORKER_API_KEY": API_KEY,
            "SUBACCOUNT_WORKER_INGRESS_TOKENS": INGRESS_TOKEN,
            "SUBACCOUNT_WORKER_HEARTBEAT_TIMEOUT_MS": str(c.heartbeat_timeout_ms),
            "SUBACCOUNT_WORKER_LOCK_TTL_MS": str(c.lock_ttl_ms),
            "SUBACCOUNT_WORKER_MAINTENANCE_CHANCE": str(c.maintenance_chance),
            "SUBACCOUNT_WORKER_API_CONNECT_TIMEOUT_S": "1",
            "SUBACCOUNT_WORKER_API_WRITE_TIMEOUT_S": "1",
            "SUBACCOUNT_WORKER_API_POOL_TIMEOUT_S": "1",
            "SUBACCOUNT_WORKER_API_READ_TIMEOUT_S": "2",
            "SUBACCOUNT_WORKER_API_SETTLE_S": str(c.settle_s),
            "SUBACCOUNT_WORKER_API_RATE_LIMIT_RPS": str(c.rate_limit_rps),
            "SUBACCOUNT_WORKER_RETRY_MAX_ATTEMPTS": "60",
            "SUBACCOUNT_WORKER_RETRY_MIN_BACKOFF_MS": "100",
            "SUBACCOUNT_WORKER_RETRY_MAX_BACKOFF_MS": "2000",
            "SUBACCOUNT_WORKER_LOCK_BUSY_DELAY_MS": "100",
            # Longer than a killed worker can hold an onboarding (heartbeat + lease), or its
            # client's other events would give up waiting for it.
            "SUBACCOUNT_WORKER_UNKNOWN_CLIENT_WAIT_S": str(c.unknown_client_wait_s),
            "SUBACCOUNT_WORKER_UNKNOWN_CLIENT_RETRY_MS": "500",
            "SUBACCOUNT_WORKER_MAX_DELIVERIES": "20",
            "SUBACCOUNT_WORKER_METRICS_PORT": "0",
            "SUBACCOUNT_WORKER_LOG_FORMAT": "json",
            "SUBACCOUNT_WORKER_LOG_LEVEL": "WARNING",
        }

    # --- processes ------------------------------------------------------------------------------

    def start(self) -> None:
        self.ingress.start()
        wait_until(self._ingress_ready, 30, "the ingress")
        for _ in range(2):
            self.start_worker()

    def start_worker(self) -> None:
        self.worker_starts += 1
        argv = [sys.executable, "-m", "worker.cli", "worker",
                "--processes", "1", "--threads", str(self.cfg.threads)]  # fmt: skip
        log = self.workdir / f"worker-{self.worker_starts}.log"
        self.workers.append(Proc(f"worker-{self.worker_starts}", argv, env=self.env, output=log))
        self.workers[-1].start()

    def kill_worker(self, rng: random.Random) -> None:
        """SIGKILL one worker's whole process group, as a lost machine would; start another."""
        with self.lock:
            victim = self.workers.pop(rng.randrange(len(self.workers)))
            victim.kill()
            self.chaos.kills += 1
            self.chaos.last_kill_at = time.monotonic()
            self.start_worker()

    def stop_workers(self) -> None:
        for proc in self.workers:
            proc.stop()

    def restart_redis(self) -> None:
        """Stop Redis (its AOF is written on the way down) and start it again on the same port."""
        self.redis.stop()
        time.sleep(1.0)  # the outage: clients see refused connections meanwhile
        self.redis.start()
        self.chaos.redis_restarts += 1

    def _ingress_ready(self) -> bool:
        self.ingress.check_alive()
        try:
            return httpx.get(f"http://127.0.0.1:{self.ingress_port}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    # --- sending --------------------------------------------------------------------------------

    def deliver(self, events: list[dict[str, Any]], rng: random.Random) -> None:
        """Send `events` in chunks, through the ingress or `send` at random, at the send rate."""
        chunk = 10
        started = time.monotonic()
        for n in range(0, len(events), chunk):
            part = events[n : n + chunk]
            via_ingress = rng.random() < 0.5
            self._with_retries(lambda p=part, i=via_ingress: self._post(p) if i else self._send(p))
            wait_s = (n + len(part)) / self.cfg.send_rate - (time.monotonic() - started)
            if wait_s > 0:
                time.sleep(wait_s)

    def refuse(self, invalid: list[dict[str, Any]]) -> None:
        """Post each invalid event alone: the ingress must answer 400 and enqueue nothing."""
        for event in invalid:
            response = self._ingress_post([event])
            if response.status_code == 400:
                self.chaos.refused_at_door += 1

    def _with_retries(self, attempt: Any) -> None:
        for tries in range(60):
            if attempt():
                return
            self.chaos.resent_chunks += 1
            time.sleep(min(0.2 * (tries + 1), 2.0))
        raise RuntimeError("a chunk of events could not be sent for a minute")

    def _post(self, events: list[dict[str, Any]]) -> bool:
        try:
            return self._ingress_post(events).status_code == 202
        except httpx.HTTPError:
            return False

    def _ingress_post(self, events: list[dict[str, Any]]) -> httpx.Response:
        return httpx.post(
            f"http://127.0.0.1:{self.ingress_port}/events",
            content=json.dumps(events),
            headers={
                "Content-Type": "application/cloudevents-batch+json",
                "Authorization": f"Bearer {INGRESS_TOKEN}",
            },
            timeout=10,
        )

    def _send(self, events: list[dict[str, Any]]) -> bool:
        import subprocess

        lines = "\n".join(json.dumps(e) for e in events) + "\n"
        done = subprocess.run(
            [sys.executable, "-m", "worker.cli", "send", "-"],
            input=lines.encode(),
            env={**os.environ, **self.env},
            capture_output=True,
            timeout=60,
        )
        return done.returncode == 0

    # --- waiting --------------------------------------------------------------------------------

    def drained(self, client: redis.Redis, wanted: set[str]) -> bool:
        """Every message acknowledged (none queued, delayed or in flight) and every event
        finished. False while Redis is away."""
        ns = keys.dramatiq_namespace(PREFIX)
        try:
            pending = sum(_pending(client, ns))
            if pending:
                return False
            return wanted <= finished_keys(client)
        except redis.RedisError:
            return False

    def wait_drained(self, client: redis.Redis, wanted: set[str]) -> None:
        """Wait for the drain; on time-out, say what is still pending and what the logs say."""
        try:
            wait_until(lambda: self.drained(client, wanted), self.cfg.drain_timeout_s, "the drain")
        except AssertionError:
            ns = keys.dramatiq_namespace(PREFIX)
            pending = _pending(client, ns)
            missing = sorted(wanted - finished_keys(client))
            tails = "".join(proc.tail(8) for proc in self.workers)
            raise AssertionError(
                f"not drained after {self.cfg.drain_timeout_s}s: messages (ready, delayed) "
                f"{pending}, {len(missing)} events without outcome {missing[:5]}{tails}"
            ) from None


def finished_keys_wait(run: Run, client: redis.Redis, wanted: set[str]) -> None:
    """Wait until every event of `wanted` has its outcome (Redis may be away meanwhile)."""

    def done() -> bool:
        try:
            return wanted <= finished_keys(client)
        except redis.RedisError:
            return False

    wait_until(done, run.cfg.drain_timeout_s, "the outcomes of the onboarded clients' events")


def finished_keys(client: redis.Redis) -> set[str]:
    entries: Any = client.xrange(keys.outcomes(PREFIX))
    return {_text(fields[b"key"]) for _id, fields in entries}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def chaos_thread(
    run: Run, cfg: ChaosConfig, admin: Any, span_s: float, stop: threading.Event
) -> None:
    """Kills, a Redis restart and an API pause at seeded moments within `span_s` seconds."""
    rng = random.Random(cfg.seed * 31)
    actions = [((k + rng.uniform(0.2, 0.8)) / cfg.kills * span_s, "kill") for k in range(cfg.kills)]
    actions += [(rng.uniform(0.3, 0.6) * span_s, "redis") for _ in range(cfg.redis_restarts)]
    actions.append((rng.uniform(0.6, 0.8) * span_s, "pause"))
    actions += [(rng.uniform(0.1, 0.9) * span_s, "top_up") for _ in range(cfg.top_ups)]
    started = time.monotonic()
    for at, action in sorted(actions):
        if stop.wait(max(0.0, at - (time.monotonic() - started))):
            return
        progress(f"chaos: {action} at {time.monotonic() - started:.1f}s")
        if action == "kill":
            run.kill_worker(rng)
        elif action == "redis":
            run.restart_redis()
        elif action == "top_up":
            top_up(run, admin, rng)
        else:
            admin.set_faults(faults(cfg, paused=True))
            time.sleep(cfg.api_pause_s)
            admin.set_faults(faults(cfg))
            run.chaos.api_pauses += 1


def top_up(run: Run, admin: Any, rng: random.Random) -> None:
    """Credits from outside (a dashboard user, recurring credits due) to a random subaccount, of
    an amount no grant of the scenario has (those are at most 500)."""
    usernames = sorted(admin.state()["subaccounts"])
    if not usernames:
        return
    try:
        admin.top_up(rng.choice(usernames), rng.randint(1001, 1999))
        run.chaos.top_ups += 1
    except SandboxAdminError:  # deleted meanwhile
        pass


@contextmanager
def running(cfg: ChaosConfig) -> Iterator[tuple[Run, Any]]:
    with services(with_redis=False) as svc, ExitStack() as stack:
        run = Run(cfg, stack, svc.workdir, svc.sandbox_url)
        svc.admin.set_faults(faults(cfg))
        svc.admin.set_sending(cfg.emails_per_s, seed=cfg.seed)
        run.start()
        yield run, svc.admin


def execute(cfg: ChaosConfig) -> Verdict:
    """One whole chaos run; the verdict says what held and what did not."""
    scenario: Scenario = build(cfg.size, cfg.seed)
    rng = random.Random(cfg.seed)
    with running(cfg) as (run, admin):
        client = redis.Redis.from_url(run.redis.url, socket_timeout=5)
        stop = threading.Event()
        span_s = max(len(scenario.main) / cfg.send_rate, 10.0) * 2
        chaos = threading.Thread(target=chaos_thread, args=(run, cfg, admin, span_s, stop))
        started = time.monotonic()
        chaos.start()
        try:
            run.refuse(scenario.invalid)
            run.deliver(scenario.main, rng)
            chaos.join()
            main_keys = {key_of(e) for e in scenario.main}
            ghosts = {key_of(e) for e in scenario.main if "-ghost-" in str(e["subject"])}
            finished_keys_wait(run, client, main_keys - ghosts)  # ghosts wait out their limit
            main_drained_at = time.monotonic()
            run.wait_drained(client, main_keys)
            run.deliver(scenario.final, rng)
            all_keys = main_keys | {key_of(e) for e in scenario.final}
            drain_from = time.monotonic()
            run.wait_drained(client, all_keys)
            drained_at = time.monotonic()
        finally:
            stop.set()
            chaos.join()
        admin.set_sending(0)
        verdict = check(scenario, client, admin, PREFIX)
        verdict.figures.update(
            events=len(scenario.events), deliveries=len(scenario.main) + len(scenario.final),
            kills=run.chaos.kills, redis_restarts=run.chaos.redis_restarts,
            api_pauses=run.chaos.api_pauses, refused_at_door=run.chaos.refused_at_door,
            settle_s=cfg.settle_s, rate_limit_rps=cfg.rate_limit_rps,
            resent_chunks=run.chaos.resent_chunks,
            run_s=round(drained_at - started, 1),
            last_phase_drain_s=round(drained_at - drain_from, 1),
            outcomes_after_last_kill_s=round(main_drained_at - run.chaos.last_kill_at, 1),
        )  # fmt: skip
        if run.chaos.refused_at_door != len(scenario.invalid):
            verdict.violations.append(
                f"{len(scenario.invalid) - run.chaos.refused_at_door} invalid events not refused"
            )
        client.close()
        return verdict


def key_of(event: dict[str, Any]) -> str:
    from handlers import parse_event

    return parse_event(event).key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the small variant (make test)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--settle", type=float, help="the in-doubt window (0: none, to see it fail)"
    )
    args = parser.parse_args()
    cfg = ChaosConfig.small(args.seed) if args.small else ChaosConfig(seed=args.seed)
    if args.settle is not None:
        cfg = dataclasses.replace(cfg, settle_s=args.settle)
    verdict = execute(cfg)
    rows = [[name, str(value)] for name, value in verdict.figures.items()]
    rows += [[f"outcome {k}", str(v)] for k, v in sorted(verdict.outcomes.items())]
    print_table(f"chaos run (seed {cfg.seed})", ["figure", "value"], rows)
    for line in verdict.violations:
        print(f"VIOLATION: {line}")
    print("PASS" if verdict.ok else "FAIL")
    return 0 if verdict.ok else 1


def _pending(client: redis.Redis, ns: str) -> tuple[int, int]:
    """Messages ready and delayed (in the broker's database)."""
    ready, delayed = Keyspace.default().read(
        client, lambda p: (p.hlen(f"{ns}:{QUEUE}.msgs"), p.hlen(f"{ns}:{QUEUE}.DQ.msgs"))
    )
    return int(ready), int(delayed)


if __name__ == "__main__":
    from bench.common import run_main

    run_main(main)
