"""Lua scripts run over one Redis connection per worker thread: the per-event path, lean.

redis-py's `Script` checks a connection out of the shared pool and back in on every call, inside
its retry wrapper: about 30 µs of CPU a call, a third of a loopback round trip, and an event
makes two to four such calls from the same thread. So each thread keeps one connection of the
client's pool settings for itself (same address, auth, TLS, timeouts and health checks) and
sends EVALSHA on it directly. Before each call a connection the server has closed meanwhile
(restart, failover, idle timeout) is dropped and opened again; one that fails during a call is
closed by redis-py, the call raises, and the next call opens a new one. NOSCRIPT (a restarted or
failed-over Redis) runs the script's source once, which loads it again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis
from redis.connection import ConnectionInterface
from redis.exceptions import NoScriptError

from worker.per_thread import PerThread


@dataclass(frozen=True)
class LuaScript:
    """A Lua script and its SHA1, the name EVALSHA runs it by."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())  # noqa: S324

    @classmethod
    def load(cls, name: str, *preludes: str) -> LuaScript:
        """The script `worker/pipeline/lua/<name>.lua` (package data), read once by the caller,
        after the `preludes` (files of the same folder defining local functions it uses)."""
        lua = resources.files("worker.pipeline").joinpath("lua")
        return cls("\n".join(lua.joinpath(f"{n}.lua").read_text() for n in (*preludes, name)))


class ScriptRunner:
    """Runs Lua scripts for many threads, each on its own long-lived connection."""

    def __init__(self, client: redis.Redis) -> None:
        pool = client.connection_pool  # its settings; the connections stay out of it
        self._connections: PerThread[ConnectionInterface] = PerThread(
            lambda: pool.connection_class(**pool.connection_kwargs), _disconnect
        )

    def __call__(self, script: LuaScript, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA `script`; raises `redis.RedisError` (the connection is then reopened)."""
        conn = self._connections.get()
        _drop_if_stale(conn)
        try:
            return _execute(conn, "EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return _execute(conn, "EVAL", script.source, len(keys), *keys, *args)

    def connection(self) -> ConnectionInterface:
        """This thread's connection: the one its scripts wrote on (what WAITAOF waits for)."""
        return self._connections.get()

    def close(self) -> None:
        """Close every thread's connection (a later call opens a new one)."""
        self._connections.close_all()


def _execute(conn: ConnectionInterface, *command: Any) -> Any:
    conn.send_command(*command)  # type: ignore[no-untyped-call]  # (untyped in redis-py)
    return conn.read_response()


def _drop_if_stale(conn: ConnectionInterface) -> None:
    """Close a connection the server closed (or wrote to) while it sat idle, as redis-py's pool
    checks on checkout: the call then opens a fresh one instead of failing on the dead socket.
    One non-blocking read, about a microsecond."""
    try:
        stale = conn.can_read()
    except redis.ConnectionError:
        stale = True
    if stale:
        _disconnect(conn)


def _disconnect(conn: ConnectionInterface) -> None:
    conn.disconnect()  # type: ignore[no-untyped-call]
