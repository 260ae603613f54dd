"""Lua scripts on per-thread connections (worker.pipeline.scripts) against a real Redis server."""

from __future__ import annotations

import pytest
import redis

from tests.threads import threads_kept_alive
from worker.dev.devservers import wait_until
from worker.pipeline.scripts import LuaScript, ScriptRunner

ECHO = LuaScript("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")
CLIENT_ID = LuaScript("return redis.call('CLIENT', 'ID')")


def test_a_script_runs_with_its_keys_and_args(redis_client: redis.Redis) -> None:
    run = ScriptRunner(redis_client)
    assert run(ECHO, ["k"], ["v"]) == [b"k", b"v", 1]
    assert run(ECHO, ["k"], [7]) == [b"k", b"7", 2]


def test_a_flushed_script_cache_is_reloaded(redis_client: redis.Redis) -> None:
    """NOSCRIPT (a restarted or failed-over Redis) runs the source again instead of failing."""
    run = ScriptRunner(redis_client)
    run(ECHO, ["k"], ["v"])
    redis_client.script_flush()
    assert run(ECHO, ["k"], ["v"])[2] == 2
    assert redis_client.script_exists(ECHO.sha) == [True]


RUNNER = "script-runner-under-test"


def _runner(redis_url: str) -> ScriptRunner:
    """A runner whose connections name themselves, so the server's client list can count them
    (other tests' connections may still be closing on the shared server)."""
    return ScriptRunner(redis.Redis.from_url(redis_url, client_name=RUNNER))


def _runner_connections(client: redis.Redis) -> int:
    """The runner's connections open on the server."""
    return sum(1 for entry in client.client_list() if entry.get("name") == RUNNER)


def test_each_thread_keeps_one_connection_until_it_ends(
    redis_url: str, redis_client: redis.Redis
) -> None:
    run = _runner(redis_url)

    def work() -> None:
        for _ in range(5):
            run(ECHO, ["k"], ["v"])

    with threads_kept_alive(3, work):
        assert redis_client.get("k") == b"15"
        assert _runner_connections(redis_client) == 3  # one per thread, reused for its 5 calls
    # closed as each thread ended (the server notices each close a moment later)
    wait_until(lambda: _runner_connections(redis_client) == 0, 5, "connections closed")


def test_a_connection_the_server_closed_is_reopened_before_the_call(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A restart, failover or idle timeout between two calls costs no failed call."""
    run = _runner(redis_url)
    run(ECHO, ["k"], ["v"])
    redis_client.client_kill_filter(skipme=True)  # every connection but the test's own
    wait_until(lambda: _runner_connections(redis_client) == 0, 5, "the kill to land")
    assert run(ECHO, ["k"], ["v"])[2] == 2
    assert _runner_connections(redis_client) == 1


def test_a_script_error_leaves_the_connection_usable(redis_client: redis.Redis) -> None:
    run = ScriptRunner(redis_client)
    redis_client.set("s", "text")
    with pytest.raises(redis.ResponseError):
        run(LuaScript("return redis.call('HGET', KEYS[1], 'f')"), ["s"], [])  # WRONGTYPE
    assert run(ECHO, ["k"], ["v"]) == [b"k", b"v", 1]
