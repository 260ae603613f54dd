"""What durability costs and what it buys, side by side in one run (issue 21).

    python -m bench.durability_bench throughput   # pipeline events/s, ingress requests/s (~1 min)
    python -m bench.durability_bench failover     # the failover run, durability none vs replicas:1
    python -m bench.durability_bench power-loss   # Redis "loses power" mid-write: none vs local

throughput: valkey-servers with AOF fsynced every second (deploy/'s setting today) and on every
write (what `local` needs), and the sandbox answering every call after 100 ms. Pipeline:
`invoice.paid` for pre-onboarded clients (an evidence read, then the grant, whose record waits for
WAITAOF first) through an in-process Dramatiq worker of 8 threads, timed from publish to the last
outcome. Ingress: bench/ingress_bench.py's ingress process and raw client, signed Stripe webhooks
on 16 connections for a fixed time (each 202 after a WAITAOF shared by its group commit). The
configurations alternate run by run. A shared 2-core machine: compare rows, not absolutes.

power-loss: tests/power_loss_support.py (an LD_PRELOAD shim keeps the AOF's unsynced writes in
the server process, so SIGKILL loses what a power cut loses), all four combinations.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from bench import ingress_bench
from handlers import examples as f
from tests.conftest import TEST_API_KEY
from tests.failover_support import cluster, run_failover
from tests.pipeline_support import pipeline_settings, running_pipeline, wait_for_outcomes
from tests.power_loss_support import build_shim, run_power_loss
from tests.servers import ThreadedUvicorn, ValkeyServer, free_port, wait_until
from worker.sandbox import SandboxAdmin, create_app

# (appendfsync, durability): today's deploy/ setting, then what `local` needs, with and without
# the waits (with `always` the server already fsyncs before answering; WAITAOF confirms it).
# `replicas:1` on the everysec server, which has a replica here (what a Sentinel setup runs).
CONFIGS = (
    ("everysec", "none"),
    ("always", "none"),
    ("always", "local"),
    ("everysec", "replicas:1"),
)


def pipeline_rate(
    server: ValkeyServer, sandbox: SandboxAdmin, api: str, mode: str, n: int
) -> float:
    """Events/s of `n` invoice.paid events through 8 worker threads, durability `mode`."""
    redis.Redis(port=server.port).flushall()
    sandbox.reset()
    client = redis.Redis(port=server.port)
    setup = pipeline_settings(server.url, api, TEST_API_KEY, redis_durability="none")
    ids = [f"B-{mode}-{i}" for i in range(n)]
    onboard = [f.onboarded(cid) for cid in ids]
    with running_pipeline(setup, threads=8) as runtime:
        runtime.publisher.publish_many(onboard)
        wait_for_outcomes(client, [e["id"] for e in onboard], timeout_s=120)
    sandbox.set_faults({"default": {"latency_ms": 100}})
    paid = [f.invoice_paid(cid, f"INV-{cid}", 5) for cid in ids]
    settings = pipeline_settings(server.url, api, TEST_API_KEY, redis_durability=mode)
    with running_pipeline(settings, threads=8) as runtime:
        started = time.perf_counter()
        runtime.publisher.publish_many(paid)
        wait_for_outcomes(client, [e["id"] for e in paid], timeout_s=300)
        elapsed = time.perf_counter() - started
    client.close()
    return n / elapsed


def ingress_rate(server: ValkeyServer, mode: str, seconds: float, connections: int) -> float:
    """Signed Stripe webhooks answered 202 per second (bench/ingress_bench.py's ingress process
    and raw client), durability `mode`."""
    redis.Redis(port=server.port).flushall()
    port = free_port()
    command = [sys.executable, ingress_bench.__file__, "--serve", str(port)]
    command += ["--redis-url", server.url, "--log-level", "WARNING"]
    env = {**os.environ, "SUBACCOUNT_WORKER_REDIS_DURABILITY": mode}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: ingress_bench._healthy(f"http://127.0.0.1:{port}"), timeout_s=20)
        requests = ingress_bench.signed_requests(2000)
        result = asyncio.run(
            ingress_bench.case("raw", port, ingress_bench.STRIPE, requests, connections, seconds)
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return result.rate


def side_by_side(name: str, runs: int, measure: Callable[[str, str], float], unit: str) -> None:
    """Each configuration `runs` times, alternating; medians and every run printed."""
    figures: dict[tuple[str, str], list[float]] = {config: [] for config in CONFIGS}
    for _ in range(runs):
        for config in CONFIGS:
            figures[config].append(measure(*config))
    base = statistics.median(figures[CONFIGS[0]])
    print(f"{name} ({unit}, median of {runs}; every run in brackets):")
    for (fsync, mode), values in figures.items():
        median = statistics.median(values)
        runs_text = ", ".join(f"{v:.1f}" for v in values)
        print(
            f"  appendfsync {fsync:<8} durability {mode:<6} {median:8.1f}"
            f"  ({(median - base) / base * 100:+.1f}%)  [{runs_text}]",
            flush=True,
        )


def throughput(events: int, seconds: float, runs: int, connections: int) -> None:
    servers = {fsync: ValkeyServer(fsync=fsync).start() for fsync in ("everysec", "always")}
    replica = ValkeyServer("--replicaof", "127.0.0.1", str(servers["everysec"].port)).start()
    sandbox_server = ThreadedUvicorn(create_app(api_key=TEST_API_KEY)).start()
    sandbox = SandboxAdmin(sandbox_server.url)
    api = f"{sandbox_server.url}/v6"
    try:
        side_by_side(
            f"pipeline, {events} invoice.paid at 100 ms API latency, 8 threads",
            runs,
            lambda fsync, mode: pipeline_rate(servers[fsync], sandbox, api, mode, events),
            "events/s",
        )
        side_by_side(
            f"ingress, {connections} connections for {seconds:.0f} s",
            runs,
            lambda fsync, mode: ingress_rate(servers[fsync], mode, seconds, connections),
            "requests/s",
        )
    finally:
        sandbox.close()
        sandbox_server.stop()
        for server in (*servers.values(), replica):
            server.cleanup()


def power_loss() -> None:
    shim = build_shim(Path(tempfile.mkdtemp(prefix="saw-shim-")))
    for fsync, mode in (
        ("everysec", "none"),
        ("everysec", "local"),  # (the start refuses this; run here to show why)
        ("always", "none"),
        ("always", "local"),
    ):
        print(run_power_loss(shim, fsync, mode).line(), flush=True)


def failover() -> None:
    sandbox_server = ThreadedUvicorn(create_app(api_key=TEST_API_KEY)).start()
    sandbox = SandboxAdmin(sandbox_server.url)
    try:
        for mode in ("none", "replicas:1"):
            sandbox.reset()
            with cluster() as made:
                figures = run_failover(
                    made, sandbox, f"{sandbox_server.url}/v6", TEST_API_KEY, mode, give_up_s=15
                )
            print(figures.line(), flush=True)
    finally:
        sandbox.close()
        sandbox_server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["throughput", "failover", "power-loss"])
    parser.add_argument("--events", type=int, default=400, help="pipeline events per run")
    parser.add_argument("--seconds", type=float, default=5.0, help="ingress time per run")
    parser.add_argument("--runs", type=int, default=2, help="runs per configuration")
    parser.add_argument("--connections", type=int, default=16, help="ingress connections")
    args = parser.parse_args()
    if args.what == "throughput":
        throughput(args.events, args.seconds, args.runs, args.connections)
    elif args.what == "failover":
        failover()
    else:
        power_loss()
    return 0


if __name__ == "__main__":
    sys.exit(main())
