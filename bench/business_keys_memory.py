"""What keeping grant business keys for a client's life costs in Redis memory, per 1M invoices.

    python -m bench.business_keys_memory [--invoices 1000000]

On a private redis-server, writes `--invoices` entries in the form the worker keeps them
(`{p}:business-keys:{client}` hash, field `invoice:<id>`, value `<32-hex event key> <amount>`;
`worker/pipeline/lua/finish.lua`) for three spreads of invoices over clients, and the same
invoices as today's owner keys (`{p}:business:…` and `{p}:business-amount:…` strings with a TTL,
kept `LEDGER_TTL_S` only). Prints bytes per invoice from `MEMORY USAGE` summed over the keys and
from `used_memory` before/after, and the total per 1M invoices.
"""

from __future__ import annotations

import argparse
import secrets

import redis

from worker import keys
from worker.dev.devservers import RedisServer

PREFIX = "saw"
SPREADS = [1, 10, 100, 1000]  # invoices per client
BATCH = 10_000


def _fill_hashes(client: redis.Redis, invoices: int, per_client: int) -> list[str]:
    names: list[str] = []
    pipe = client.pipeline(transaction=False)
    for n in range(invoices):
        name = keys.business_keys(PREFIX, f"client-{n // per_client:07d}")
        if n % per_client == 0:
            names.append(name)
        pipe.hset(name, f"invoice:in_{n:010d}", f"{secrets.token_hex(16)} {1000 + n % 9000}")
        if len(pipe) >= BATCH:
            pipe.execute()
    pipe.execute()
    return names


def _fill_strings(client: redis.Redis, invoices: int) -> list[str]:
    names: list[str] = []
    pipe = client.pipeline(transaction=False)
    for n in range(invoices):
        owner = secrets.token_hex(16)
        name = keys.business(PREFIX, "invoice", f"in_{n:010d}")
        amount = keys.business_amount(PREFIX, "invoice", f"in_{n:010d}")
        pipe.set(name, owner, ex=30 * 86_400)
        pipe.set(amount, f"{owner} {1000 + n % 9000}", ex=30 * 86_400)
        names += [name, amount]
        if len(pipe) >= BATCH:
            pipe.execute()
    pipe.execute()
    return names


def _measure(client: redis.Redis, label: str, invoices: int, fill: object) -> None:
    client.flushall()
    before = int(client.info("memory")["used_memory"])
    names = fill(client)  # type: ignore[operator]
    after = int(client.info("memory")["used_memory"])
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.memory_usage(name, samples=0)
    usage = sum(int(n or 0) for n in pipe.execute())
    per_usage, per_used = usage / invoices, (after - before) / invoices
    print(f"{label:<44} {per_usage:>8.1f} {per_used:>8.1f} {per_used * 1e6 / 2**20:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invoices", type=int, default=1_000_000)
    invoices = parser.parse_args().invoices
    server = RedisServer().start()
    try:
        client = redis.Redis.from_url(server.url)
        version = client.info("server")["redis_version"]
        print(f"redis {version}; {invoices} invoices; bytes per invoice")
        print(f"{'layout':<44} {'MEMORY':>8} {'used':>8} {'MiB per 1M':>10}")
        for per_client in SPREADS:
            label = f"business-keys hash, {per_client} per client"
            _measure(client, label, invoices,
                     lambda c, p=per_client: _fill_hashes(c, invoices, p))  # fmt: skip
        _measure(client, "owner + amount strings (today, 30 days)", invoices,
                 lambda c: _fill_strings(c, invoices))  # fmt: skip
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
