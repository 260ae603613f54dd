"""The attacks one shared Redis user allowed, against every user of
deploy/redis/users.acl.template: each is refused for every user whose role does not need it (and
the test prints the user x attack matrix).

Before each attempt the admin puts back the ledger record, the business key, the audit stream
and a dead letter, so an allowed attempt is seen to act. The busy loop is never run: an EVAL is
checked by the ACL before its script starts, so a harmless script shows who may run one (and a
user who may could run `while true do end` too, which only an admin's SCRIPT KILL stops).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from tests.acl_support import AclRedis

LEDGER = "saw:ledger:evt-1"
BUSINESS = "saw:business:invoice:INV-1"
AUDIT = "saw:ops:audit"
DEAD = "saw:dead"

Attack = Callable[[redis.Redis], Any]
ATTACKS: dict[str, Attack] = {
    "DEL ledger": lambda r: r.delete(LEDGER),
    "DEL business key": lambda r: r.delete(BUSINESS),
    "DEL audit": lambda r: r.delete(AUDIT),
    "EVAL (any script)": lambda r: r.eval("return 'ran'", 0),
    "EVAL DEL ledger": lambda r: r.eval("return redis.call('DEL', KEYS[1])", 1, LEDGER),
    "KEYS *": lambda r: r.keys("*"),
    "HSET ledger": lambda r: r.hset(LEDGER, "grant", "forged"),
    "SET business key": lambda r: r.set(BUSINESS, "forged"),
    "HSET dead letter": lambda r: r.hset(DEAD, "forged", "{}"),
    "XADD audit": lambda r: r.xadd(AUDIT, {"forged": "1"}),
    "FLUSHALL": lambda r: r.flushall(),
}
# Who needs what (everything else refused): the worker writes the ledger and dead letters and
# releases business-key claims, and runs Dramatiq's Lua and its KEYS maintenance; the monitor
# runs Lua (its lease, the shared rate limit, Dramatiq's) and a delivery consumer's maintenance;
# the console and operator run the replay script, which resolves a ledger step, moves dead
# letters and records the action in the audit stream; admin may do anything.
ALLOWED: dict[str, set[str]] = {
    "saw-worker": {"DEL business key", "EVAL (any script)", "KEYS *", "HSET ledger",
                   "SET business key", "HSET dead letter"},
    "saw-ingress": set(),
    "saw-monitor": {"EVAL (any script)", "KEYS *"},
    "saw-console": {"EVAL (any script)", "HSET ledger", "HSET dead letter", "XADD audit"},
    "saw-operator": {"EVAL (any script)", "HSET ledger", "HSET dead letter", "XADD audit"},
    "saw-reader": set(),
    "keda": set(),
    "healthcheck": set(),
    "admin": set(ATTACKS),
}  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[AclRedis]:
    acl = AclRedis().start()
    yield acl
    acl.stop()


def _reset(admin: redis.Redis) -> None:
    admin.flushall()
    admin.hset(LEDGER, "grant", '{"state": "done"}')
    admin.set(BUSINESS, "evt-1")
    admin.xadd(AUDIT, {"action": "replay"})
    admin.hset(DEAD, "evt-2", "{}")


def _refused(exc: redis.RedisError) -> bool:
    """Is `exc` the ACL's refusal (directly, or of a command inside a script)?"""
    text = str(exc)
    return isinstance(exc, redis.exceptions.NoPermissionError) or (
        "NOPERM" in text or "no permissions" in text or "The user executing the script can" in text
    )


def _try(server: AclRedis, admin: redis.Redis, user: str, attack: Attack) -> str:
    _reset(admin)
    client = server.client(user)
    try:
        attack(client)
    except redis.RedisError as exc:
        if not _refused(exc):
            raise AssertionError(f"{user}: not a refusal: {exc}") from exc
        return "refused"
    finally:
        client.close()
    return "allowed"


def test_every_attack_is_refused_for_every_user_that_does_not_need_it(server: AclRedis) -> None:
    admin = server.client("admin")
    matrix = {
        user: {name: _try(server, admin, user, attack) for name, attack in ATTACKS.items()}
        for user in ALLOWED
    }
    admin.close()
    width = max(map(len, ATTACKS))
    print("\nACL matrix (user x attack → refused/allowed), deploy/redis/users.acl.template")
    print(" " * width + "".join(f"{user:>14}" for user in matrix))
    for name in ATTACKS:
        print(f"{name:<{width}}" + "".join(f"{matrix[user][name]:>14}" for user in matrix))
    for user, row in matrix.items():
        assert {name for name, seen in row.items() if seen == "allowed"} == ALLOWED[user], user


def test_an_allowed_attack_acts_and_a_refused_one_leaves_everything(server: AclRedis) -> None:
    """The matrix's two outcomes are real: the worker's DEL of a business key deletes it; the
    ingress's DEL of a ledger record leaves it, and so do every user's refused ones."""
    admin = server.client("admin")
    assert _try(server, admin, "saw-worker", ATTACKS["DEL business key"]) == "allowed"
    assert admin.exists(BUSINESS) == 0
    for user in ("saw-ingress", "saw-reader", "saw-console", "saw-operator", "saw-monitor"):
        assert _try(server, admin, user, ATTACKS["DEL ledger"]) == "refused"
        assert admin.hget(LEDGER, "grant") == b'{"state": "done"}'
        assert admin.get(BUSINESS) == b"evt-1"
        assert admin.xlen(AUDIT) == 1
    admin.close()
