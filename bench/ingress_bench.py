"""Benchmark: signed Stripe webhooks accepted per second (enqueue included) vs a plain route.

Starts its own redis-server on a free loopback port and the ingress under uvicorn in a
subprocess (with one extra route, `POST /plain`, that answers 202 without any work), then drives
both routes in turn with the same pre-signed requests from an async httpx client holding N
concurrent connections, each case bounded in time. Prints both rates and their ratio. Not a test.

    python bench/ingress_bench.py [--seconds 10] [--connections 8] [--client httpx|raw|both]

The httpx client is CPU-hungry (~1.5 ms of CPU per request here), so on a small machine it
saturates before the server does and flattens the ratio; the raw client is there to measure the
server itself. Client and server share the machine's cores: expect noise of 10-20 %.
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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
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
from worker.pipeline.keyspace import Keyspace  # noqa: E402
from worker.settings import Settings, load_settings  # noqa: E402

STRIPE_SECRET = "whsec_bench_only"  # noqa: S105 (a throwaway secret of a throwaway server)
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


Sender = Callable[[str, bytes, dict[str, str]], Awaitable[int]]
Requests = list[tuple[bytes, dict[str, str]]]


@dataclass
class Result:
    """What one timed case measured."""

    client: str
    path: str
    seconds: float = 0.0
    ok: int = 0
    failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        cuts = (
            statistics.quantiles(self.latencies_ms, n=100)
            if len(self.latencies_ms) > 1
            else [0.0] * 99
        )
        return (
            f"{self.client:<6} {self.path:<18} {self.rate:8.0f} req/s  ok={self.ok:<7}"
            f" failed={self.failed:<4} p50={cuts[49]:6.1f} ms  p99={cuts[98]:6.1f} ms"
        )


@asynccontextmanager
async def httpx_senders(url: str, connections: int) -> AsyncIterator[list[Sender]]:
    """One httpx AsyncClient holding `connections` keep-alive connections, one sender each."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0) as client:

        async def send(path: str, body: bytes, headers: dict[str, str]) -> int:
            return (await client.post(path, content=body, headers=headers)).status_code

        yield [send] * connections


@asynccontextmanager
async def raw_senders(port: int, connections: int) -> AsyncIterator[list[Sender]]:
    """Minimal HTTP/1.1 keep-alive connections on asyncio streams: a client that costs little."""
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]

    def sender(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Sender:
        async def send(path: str, body: bytes, headers: dict[str, str]) -> int:
            lines = [f"POST {path} HTTP/1.1", "host: bench", f"content-length: {len(body)}"]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            return status

        return send

    try:
        yield [sender(reader, writer) for reader, writer in streams]
    finally:
        for _, writer in streams:
            writer.close()


async def timed(
    senders: list[Sender], result: Result, requests: Requests, seconds: float
) -> Result:
    """Warm up for a second, then send `requests` round-robin on every sender for `seconds`."""
    await _loop(senders, result.path, requests, time.perf_counter() + 1.0, None)
    start = time.perf_counter()
    await _loop(senders, result.path, requests, start + seconds, result)
    result.seconds = time.perf_counter() - start
    return result


async def _loop(
    senders: list[Sender], path: str, requests: Requests, until: float, result: Result | None
) -> None:
    async def worker(offset: int, send: Sender) -> None:
        index = offset
        while time.perf_counter() < until:
            body, headers = requests[index % len(requests)]
            index += len(senders)
            sent = time.perf_counter()
            status = await send(path, body, headers)
            if result is None:
                continue
            if status == 202:
                result.ok += 1
                result.latencies_ms.append((time.perf_counter() - sent) * 1000)
            else:
                result.failed += 1

    await asyncio.gather(*(worker(i, send) for i, send in enumerate(senders)))


async def case(
    client: str, port: int, path: str, requests: Requests, connections: int, seconds: float
) -> Result:
    """One timed case: `client` ('httpx' or 'raw') driving `path`."""
    url = f"http://127.0.0.1:{port}"
    opened = (
        httpx_senders(url, connections) if client == "httpx" else raw_senders(port, connections)
    )
    async with opened as senders:
        return await timed(senders, Result(client, path), requests, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="timed length of each case")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    parser.add_argument("--log-level", default="INFO", help="ingress log level (JSON to /dev/null)")
    parser.add_argument(
        "--client",
        choices=["httpx", "raw", "both"],
        default="both",
        help="httpx AsyncClient, a minimal raw HTTP/1.1 client (measures the server, not the "
        "client), or both",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # subprocess: port
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.redis_url, args.log_level)
        return
    clients = ["httpx", "raw"] if args.client == "both" else [args.client]
    run(args.seconds, args.connections, args.log_level, clients)


def run(seconds: float, connections: int, log_level: str, clients: list[str]) -> None:
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
        accepted = 0
        for client in clients:
            plain = asyncio.run(case(client, port, PLAIN, requests, connections, seconds))
            print(plain.line())
            stripe = asyncio.run(case(client, port, STRIPE, requests, connections, seconds))
            print(stripe.line())
            print(f"{client:<6} ratio stripe/plain = {stripe.rate / plain.rate:.2f} (goal >= 0.20)")
            accepted += stripe.ok
        queued = _queued(redis_server.url)
        print(f"messages on the queue = {queued} (>= {accepted} accepted in timed runs)")
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
        queue = keys.dramatiq_queue(settings.key_prefix, settings.queue_name)
        return int(Keyspace.of(settings).read(client, lambda p: p.llen(queue))[0])
    finally:
        client.close()


if __name__ == "__main__":
    main()
