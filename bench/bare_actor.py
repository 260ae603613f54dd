"""The baseline of `bench.pipeline_bench`: a bare Dramatiq actor doing one plain httpx call.

Run as `python -m dramatiq bench.bare_actor -p P -t T` with `BENCH_BARE_*` in the environment.
Each message creates one subaccount on the sandbox's v6 surface (the same call the pipeline makes
for `client.onboarded`) through one httpx.Client shared by the process's threads and sized for
them, then counts itself in Redis (`INCR`), which is how the benchmark sees completions. No
validation, no ledger, no lock, no logging: what is left is Dramatiq, Redis and HTTP.

With `BENCH_BARE_HTTP=session` the call goes through the worker's own HTTP layer instead
(`worker.api.http.HttpSession`: httpx's transport, one connection per thread), which shows what
the pipeline costs on top of the same HTTP path.
"""

from __future__ import annotations

import os

import dramatiq
import httpx
import redis
from dramatiq.brokers.redis import RedisBroker

from bench.common import BARE_ACTOR, BARE_DONE_KEY, BARE_FAILED_KEY, BARE_NAMESPACE, BARE_QUEUE
from worker.api.http import HttpSession

# Meets the sandbox's v6 password policy; a loopback fixture, not a secret.
PASSWORD = "Bench-Passw0rd-1"  # noqa: S105

_threads = int(os.environ.get("BENCH_BARE_THREADS", "8"))
_redis = redis.Redis.from_url(
    os.environ.get("BENCH_BARE_REDIS_URL", "redis://127.0.0.1:6379/0"),
    max_connections=_threads * 2 + 8,
)
broker = RedisBroker(client=_redis, namespace=BARE_NAMESPACE)
dramatiq.set_broker(broker)
_url = os.environ.get("BENCH_BARE_API_URL", "http://127.0.0.1:8025/v6")
_auth = {"Authorization": f"Bearer {os.environ.get('BENCH_BARE_API_KEY', '')}"}
_timeout = httpx.Timeout(10.0, connect=3.0, pool=5.0)
http = httpx.Client(
    base_url=_url,
    headers=_auth,
    limits=httpx.Limits(max_connections=_threads + 4, max_keepalive_connections=_threads + 4),
    timeout=_timeout,
)
session = HttpSession(_url, timeout=_timeout)
session.set_headers(_auth)
_via_session = os.environ.get("BENCH_BARE_HTTP") == "session"


@dramatiq.actor(actor_name=BARE_ACTOR, queue_name=BARE_QUEUE, max_retries=0)
def bare_create(username: str) -> None:
    """POST one create; count it done (or failed) in Redis."""
    body = {
        "username": username,
        "email": f"{username}@example.com",
        "password": PASSWORD,
        "credit_type": "one_time_credit",
    }
    if _via_session:
        response = session.send("POST", "/subaccounts", body=body)
    else:
        response = http.post("/subaccounts", json=body)
    _redis.incr(BARE_DONE_KEY if response.is_success else BARE_FAILED_KEY)
