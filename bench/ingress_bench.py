"""Benchmark: signed Stripe webhooks accepted per second (enqueue included) vs a plain route.

Starts its own redis-server on a free loopback port and the ingress under uvicorn in a
subprocess (with one extra route, `POST /plain`, that answers 202 without any work), then drives
both routes in turn with the same pre-signed requests from an async httpx client holding N
concurrent connections, each case bounded in time. Prints both rates and their ratio. Not a test.

    python bench/ingress_bench.py [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402

from tests.servers import RedisServer, free_port, wait_until  # noqa: E402
from worker import keys  # noqa: E402
from worker.ingress import sign_stripe  # noqa: E402
from worker.settings import Settings, load_settings  # noqa: E402

STRIPE_SECRET = "whsec_bench_only"
PRICE = "price_bench"
PLAIN = "/plain"
STRIPE = "/webhooks/stripe"
DISTINCT_REQUESTS = 4000


def bench_settings(redis_url: str, log_level: str) -> Settings:
    """Settings of the benchmarked ingress: a Stripe secret and one price in the credits map."""
    return load_settings(
        redis_url=redis_url,
        stripe_webhook_secret=STRIPE_SECRET,
        stripe_price_credits={PRICE: 100},
        log_format="json",
        log_level=log_level,
    )


def serve(port: int, redis_url: str, log_level: str) -> None:
    """Subprocess side: the ingress plus `POST /plain` under uvicorn, as `serve()` runs it."""
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from worker.ingress import create_app
    from worker.log import configure_logging

    async def plain(request: Request) -> Response:
        await request.body()
        return Response(status_code=202)

    settings = bench_settings(redis_url, log_level)
    configure_logging(settings)
    app = create_app(settings)
    app.router.routes.append(Route(PLAIN, plain, methods=["POST"]))
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, server_header=False
    )


def signed_requests(count: int) -> list[tuple[bytes, dict[str, str]]]:
    """`count` distinct Stripe invoice.paid deliveries, each signed now."""
    now = int(time.time())
    requests = []
    for i in range(count):
        invoice = {
            "id": f"in_bench_{i}",
            "object": "invoice",
            "metadata": {"client_id": f"C{i % 97}"},
            "lines": {"data": [{"price": {"id": PRICE}, "quantity": 1 + i % 3}]},
        }
        event = {
            "id": f"evt_bench_{i}",
            "type": "invoice.paid",
            "created": now,
            "data": {"object": invoice},
        }
        body = json.dumps(event).encode()
        headers = {
            "content-type": "application/json",
            "stripe-signature": sign_stripe(body, STRIPE_SECRET, now),
        }
        requests.append((body, headers))
    return requests


@dataclass
class Result:
    """What one timed case measured."""

    path: str
    seconds: float
    ok: int = 0
    failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    def line(self) -> str:
        cuts = (
            statistics.quantiles(self.latencies_ms, n=100)
            if len(self.latencies_ms) > 1
            else [0] * 99
        )
        return (
            f"{self.path:<18} {self.rate:9.0f} req/s  ok={self.ok:<7} failed={self.failed:<4}"
            f" p50={cuts[49]:6.1f} ms  p99={cuts[98]:6.1f} ms"
        )


async def drive(
    url: str,
    path: str,
    requests: list[tuple[bytes, dict[str, str]]],
    connections: int,
    seconds: float,
) -> Result:
    """Send `requests` round-robin on `connections` concurrent connections for `seconds`."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0) as client:
        warm_until = time.perf_counter() + 1.0
        await _loop(client, path, requests, connections, warm_until, None)
        result = Result(path, seconds)
        start = time.perf_counter()
        await _loop(client, path, requests, connections, start + seconds, result)
        result.seconds = time.perf_counter() - start
    return result


async def _loop(
    client: httpx.AsyncClient,
    path: str,
    requests: list[tuple[bytes, dict[str, str]]],
    connections: int,
    until: float,
    result: Result | None,
) -> None:
    async def worker(offset: int) -> None:
        index = offset
        while time.perf_counter() < until:
            body, headers = requests[index % len(requests)]
            index += connections
            sent = time.perf_counter()
            response = await client.post(path, content=body, headers=headers)
            if result is None:
                continue
            if response.status_code == 202:
                result.ok += 1
                result.latencies_ms.append((time.perf_counter() - sent) * 1000)
            else:
                result.failed += 1

    await asyncio.gather(*(worker(i) for i in range(connections)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="timed length of each case")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--log-level", default="INFO", help="ingress log level (JSON to /dev/null)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # subprocess: port
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.redis_url, args.log_level)
        return
    run(args.seconds, args.connections, args.log_level)


def run(seconds: float, connections: int, log_level: str) -> None:
    """Start Redis and the ingress, drive the plain route then the Stripe route, print figures."""
    redis_server = RedisServer().start()
    port = free_port()
    command = [sys.executable, __file__, "--serve", str(port), "--redis-url", redis_server.url]
    command += ["--log-level", log_level]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(url), timeout_s=20, what="the ingress")
        requests = signed_requests(DISTINCT_REQUESTS)
        print(f"cpus={os.cpu_count()} connections={connections} seconds/case={seconds}")
        plain = asyncio.run(drive(url, PLAIN, requests, connections, seconds))
        print(plain.line())
        stripe = asyncio.run(drive(url, STRIPE, requests, connections, seconds))
        print(stripe.line())
        print(f"ratio stripe/plain = {stripe.rate / plain.rate:.2f} (goal >= 0.20)")
        print(f"messages on the queue = {_queued(redis_server.url)} (accepted incl. warm-up)")
    finally:
        server.terminate()
        server.wait(timeout=10)
        redis_server.cleanup()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def _queued(redis_url: str) -> int:
    settings = bench_settings(redis_url, "INFO")
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.llen(keys.dramatiq_queue(settings.key_prefix, settings.queue_name)))
    finally:
        client.close()


if __name__ == "__main__":
    main()
