"""What durability costs and what it buys, side by side in one run (issue 21).

    python -m bench.durability_bench throughput   # pipeline events/s, ingress requests/s (~1 min)
    python -m bench.durability_bench failover     # the failover run, durability none vs replicas:1
    python -m bench.durability_bench power-loss   # Redis "loses power" mid-write: none vs local

throughput: a valkey-server (AOF on, fsync every second, as deploy/ configures) and the sandbox
answering every call after 100 ms. Pipeline: `invoice.paid` for pre-onboarded clients (an
evidence read, then the grant: the grant's record waits for WAITAOF first) through an in-process
Dramatiq worker of 8 threads, timed from publish to the last outcome. Ingress: 16 concurrent
clients posting one event each for a fixed time (each 202 after a WAITAOF, shared by the requests
of one group commit). Both with durability `none` and `local`, runs alternating. Everything runs
in this process on a shared 2-core machine: compare the columns, not the absolute figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable

import httpx
import redis

from handlers import examples as f
from tests.conftest import TEST_API_KEY
from tests.failover_support import cluster, run_failover
from tests.ingress_support import ingress_settings, post_structured, running_ingress
from tests.pipeline_support import pipeline_settings, running_pipeline, wait_for_outcomes
from tests.servers import ThreadedUvicorn, ValkeyServer
from worker.sandbox import SandboxAdmin, create_app

MODES = ("none", "local")


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


def ingress_rate(server: ValkeyServer, mode: str, seconds: float, clients: int = 16) -> float:
    """202s per second from `clients` concurrent senders for `seconds`, durability `mode`."""
    redis.Redis(port=server.port).flushall()
    settings = ingress_settings(server.url, redis_durability=mode)
    done = [0] * clients
    with running_ingress(settings) as ingress:
        deadline = time.perf_counter() + seconds

        def sender(slot: int) -> None:
            with httpx.Client(base_url=ingress.url, timeout=10) as http:
                while time.perf_counter() < deadline:
                    answer = post_structured(http, f.onboarded(f"I-{slot}"))
                    if answer.status_code == 202:
                        done[slot] += 1

        threads = [threading.Thread(target=sender, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return sum(done) / seconds


def side_by_side(name: str, runs: int, measure: Callable[[str], float], unit: str) -> None:
    figures: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(runs):
        for mode in MODES:
            figures[mode].append(measure(mode))
    none, local = (statistics.median(figures[m]) for m in MODES)
    runs_text = "  ".join(f"{m}: " + ", ".join(f"{v:.1f}" for v in figures[m]) for m in MODES)
    print(
        f"{name}: none {none:.1f} {unit}, local {local:.1f} {unit}"
        f" ({(none - local) / none * 100:+.1f}% cost; medians of {runs}; runs {runs_text})",
        flush=True,
    )


def throughput(events: int, seconds: float, runs: int) -> None:
    server = ValkeyServer().start()
    sandbox_server = ThreadedUvicorn(create_app(api_key=TEST_API_KEY)).start()
    sandbox = SandboxAdmin(sandbox_server.url)
    api = f"{sandbox_server.url}/v6"
    try:
        side_by_side(
            f"pipeline, {events} invoice.paid at 100 ms API latency, 8 threads",
            runs,
            lambda mode: pipeline_rate(server, sandbox, api, mode, events),
            "events/s",
        )
        side_by_side(
            f"ingress, 16 concurrent senders for {seconds:.0f} s",
            runs,
            lambda mode: ingress_rate(server, mode, seconds),
            "requests/s",
        )
    finally:
        sandbox.close()
        sandbox_server.stop()
        server.cleanup()


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
    parser.add_argument("--runs", type=int, default=2, help="runs per mode")
    args = parser.parse_args()
    if args.what == "throughput":
        throughput(args.events, args.seconds, args.runs)
    elif args.what == "failover":
        failover()
    else:
        from bench.power_loss import main as power_loss

        power_loss()
    return 0


if __name__ == "__main__":
    sys.exit(main())
