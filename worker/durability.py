"""Durable before it matters: wait until Redis has kept a write (fsync, replicas), then act.

A grant's in-progress record and business key must survive a power loss or a failover before the
grant is sent, and an event before it is acknowledged (202, `send`). Redis acknowledges a write
once it is in memory; `WAITAOF 1 0` (Redis >= 7.2) waits until the master has fsynced it to its
append-only file, `WAIT N` until N replicas have it. Both wait for everything the same connection
wrote before, so callers run `Durability.wait` on the connection that wrote.

`SUBACCOUNT_WORKER_REDIS_DURABILITY` chooses the guarantee: `none`, `local`, `replicas:N` or
`local+replicas:N`; `auto` (the default) is `local` where the server can give it, else `none`, and
is said at start. A configured guarantee the server cannot give refuses the start
(`check_at_start`); there is no silent downgrade.

`local` needs `appendfsync always`, not only WAITAOF: with `everysec`, valkey-server 8.1.8 (Redis
7.2.4 protocol) answered `WAITAOF 1 0` before fsyncing (under strace: the answer 0.9 s before the
next fdatasync of the AOF), and a power cut then lost every acknowledged write of the last second
(tests/power_loss_support.py). With `always` the server fsyncs each event loop's writes together
before answering, and WAITAOF confirms it on the same connection.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import redis
from redis.connection import ConnectionInterface
from redis.exceptions import NoPermissionError, ResponseError

from worker.errors import BrokerUnavailable, ConfigError
from worker.log import get_logger
from worker.settings import ENV_PREFIX, Settings

log = get_logger(__name__)

SETTING = f"{ENV_PREFIX}REDIS_DURABILITY"
AUTO = "auto"


@dataclass(frozen=True)
class Guarantee:
    """What a write must reach before we act on it: the master's fsynced AOF, N replicas."""

    local: bool = False
    replicas: int = 0

    @classmethod
    def parse(cls, text: str) -> Guarantee:
        """`none`, `local`, `replicas:N` or `local+replicas:N` (settings validated the form)."""
        local, replicas = False, 0
        for part in text.strip().lower().split("+"):
            if part == "local":
                local = True
            elif part.startswith("replicas:"):
                replicas = int(part.removeprefix("replicas:"))
        return cls(local, replicas)

    @property
    def none(self) -> bool:
        return not self.local and not self.replicas

    def __str__(self) -> str:
        parts = (["local"] if self.local else []) + (
            [f"replicas:{self.replicas}"] if self.replicas else []
        )
        return "+".join(parts) or "none"


@dataclass(frozen=True)
class ServerFacts:
    """What the server says about keeping writes; None where it would not tell (ACL, INFO)."""

    waitaof: bool  # the command exists (Redis >= 7.2, Valkey >= 8)
    aof: bool | None  # appendonly on
    appendfsync: str | None
    maxmemory_policy: str | None
    replicas: int  # replicas connected and caught up (WAIT 0)


def probe(client: redis.Redis) -> ServerFacts:
    """Ask the server what it can keep; raises redis.RedisError if it is unreachable."""
    waitaof, aof = True, True
    try:
        client.execute_command("WAITAOF", 1, 0, 1)  # type: ignore[no-untyped-call]  # at once
    except NoPermissionError:
        waitaof, aof = False, False
    except ResponseError as exc:
        waitaof = "unknown command" not in str(exc).lower()
        aof = False
    try:
        replicas = int(client.execute_command("WAIT", 0, 1))  # type: ignore[no-untyped-call]
    except NoPermissionError:
        replicas = 0  # this user may not wait for replicas: none to count on
    info: dict[str, Any] = {}
    try:
        info = {**client.info("persistence"), **client.info("memory")}
        aof = bool(info.get("aof_enabled"))
    except NoPermissionError:
        pass
    fsync = _config(client, "appendfsync") if waitaof and aof else None  # (only matters then)
    return ServerFacts(waitaof, aof, fsync, info.get("maxmemory_policy"), replicas)


def _config(client: redis.Redis, name: str) -> str | None:
    try:
        value = client.config_get(name).get(name)
    except (NoPermissionError, ResponseError):
        return None  # CONFIG is the admin's (managed Redis often renames or denies it)
    return str(value) if value is not None else None


def choose(configured: str, facts: ServerFacts) -> Guarantee:
    """The guarantee to give: `configured`, or for `auto` the strongest local one the server
    has; ConfigError (one line: why, what to set) if the server cannot give the configured one."""
    if configured.strip().lower() == AUTO:
        return Guarantee(local=facts.waitaof and bool(facts.aof) and _fsyncs_each_write(facts))
    wanted = Guarantee.parse(configured)
    if wanted.local and not facts.waitaof:
        raise ConfigError(
            f"{SETTING}={wanted}: this Redis has no WAITAOF (needs Redis >= 7.2 or Valkey >= 8,"
            " and the user allowed to run it): upgrade it, or set"
            f" {SETTING}=none (or replicas:N with replicas) to accept losing the last second"
        )
    if wanted.local and not facts.aof:
        raise ConfigError(
            f"{SETTING}={wanted}: this Redis has appendonly off, so nothing is fsynced: set"
            f" `appendonly yes` on the server, or {SETTING}=none to accept losing writes"
        )
    if wanted.local and not _fsyncs_each_write(facts):
        raise ConfigError(
            f"{SETTING}={wanted}: this Redis has appendfsync {facts.appendfsync}, where WAITAOF"
            " answers before the fsync (a power cut lost acknowledged writes): set `appendfsync"
            f" always` on the server, or {SETTING}=none (or replicas:N) to accept that"
        )
    return wanted


def _fsyncs_each_write(facts: ServerFacts) -> bool:
    """appendfsync always, or not readable (CONFIG denied: WAITAOF is trusted then)."""
    return facts.appendfsync in (None, "always")


def warnings(facts: ServerFacts, guarantee: Guarantee) -> list[str]:
    """The honest start-up warnings: one line each (AOF off, eviction, missing replicas)."""
    found = []
    if facts.aof is False:
        found.append("Redis has appendonly off: a restart loses everything since the last save")
    elif facts.aof and facts.appendfsync != "always" and not guarantee.local:
        found.append(
            f"Redis fsyncs its AOF {facts.appendfsync or 'on its schedule'} and durability is"
            f" {guarantee}: a power loss can lose the last second (grants twice, lost 202s)"
        )
    if facts.maxmemory_policy not in (None, "noeviction"):
        found.append(
            f"Redis maxmemory-policy is {facts.maxmemory_policy}: under memory pressure it"
            " evicts ledger entries and queued events; set noeviction"
        )
    if guarantee.replicas > facts.replicas:
        found.append(
            f"durability asks for {guarantee.replicas} replica(s) but {facts.replicas} are"
            " connected: every durable write waits until enough are back"
        )
    return found


def describe(settings: Settings, client: redis.Redis) -> tuple[Guarantee, list[str]]:
    """The guarantee this process will give and the warnings to say, from the server's facts."""
    facts = probe(client)
    guarantee = choose(settings.redis_durability, facts)
    return guarantee, warnings(facts, guarantee)


def check_at_start(settings: Settings, client: redis.Redis) -> None:
    """Refuse (ConfigError) a server that cannot give the configured guarantee; log the chosen
    one and each warning on one line. A Redis that is down is waited for, not refused."""
    try:
        guarantee, found = describe(settings, client)
    except redis.RedisError as exc:
        log.warning("redis.durability_unchecked", error=type(exc).__name__)
        return
    log.info("redis.durability", guarantee=str(guarantee), setting=settings.redis_durability)
    for line in found:
        log.warning("redis.warning", problem=line)


class Durability:
    """Waits, on the connection that wrote, until the chosen guarantee holds for its writes."""

    def __init__(self, client: redis.Redis, configured: str, timeout_ms: int) -> None:
        self._client = client
        self._configured = configured
        self._timeout_ms = timeout_ms
        self._guarantee: Guarantee | None = None
        if configured.strip().lower() != AUTO:
            self._guarantee = Guarantee.parse(configured)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Settings) -> Durability:
        return cls(client, settings.redis_durability, settings.redis_durability_timeout_ms)

    def guarantee(self) -> Guarantee:
        """The guarantee given (for `auto`, asked of the server once, on first use)."""
        if self._guarantee is None:
            with self._lock:
                if self._guarantee is None:
                    try:
                        self._guarantee = choose(self._configured, probe(self._client))
                    except redis.RedisError as exc:
                        why = f"could not ask Redis what it keeps: {exc}"
                        raise BrokerUnavailable(why) from exc
        return self._guarantee

    def commands(self) -> list[tuple[Any, ...]]:
        """The waits to send after the writes (none for `none`)."""
        guarantee = self.guarantee()
        waits: list[tuple[Any, ...]] = []
        if guarantee.local:
            waits.append(("WAITAOF", 1, 0, self._timeout_ms))
        if guarantee.replicas:
            waits.append(("WAIT", guarantee.replicas, self._timeout_ms))
        return waits

    def check(self, replies: list[Any]) -> None:
        """Raise BrokerUnavailable unless the replies to `commands()` show the guarantee held."""
        guarantee = self.guarantee()
        got = list(replies)
        if guarantee.local and int(got.pop(0)[0]) < 1:
            raise BrokerUnavailable(f"Redis did not fsync within {self._timeout_ms} ms")
        if guarantee.replicas and int(got.pop(0)) < guarantee.replicas:
            raise BrokerUnavailable(
                f"fewer than {guarantee.replicas} replica(s) had the write within"
                f" {self._timeout_ms} ms"
            )

    def wait(self, conn: ConnectionInterface) -> None:
        """Wait on `conn` (the connection that wrote) until its writes are kept as chosen;
        BrokerUnavailable if they were not (the caller must not act on them: retry later)."""
        waits = self.commands()
        if not waits:
            return
        try:
            replies = send_all(conn, waits)
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"Redis did not confirm the write was kept: {exc}") from exc
        self.check(replies)


def send_all(conn: ConnectionInterface, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Send `commands` in one round trip on `conn` and read every reply (errors as values);
    any failure leaves the connection closed, so it is never reused half read."""
    try:
        conn.send_packed_command(conn.pack_commands(commands))  # type: ignore[no-untyped-call]
        replies = []
        for _ in commands:
            try:
                replies.append(conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]
        raise
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies
