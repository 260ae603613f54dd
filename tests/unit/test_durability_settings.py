"""Issue 21's pinned settings: SUBACCOUNT_WORKER_REDIS_DURABILITY and the Sentinel pair, read
and refused with one line each; the guarantee a setting names, and what the server must have."""

from __future__ import annotations

import pytest

from worker.durability import Guarantee, ServerFacts, choose
from worker.errors import ConfigError
from worker.settings import load_settings


@pytest.mark.parametrize(
    ("value", "shown"),
    [("none", "none"), ("LOCAL", "local"), ("replicas:2", "replicas:2"),
     ("local+replicas:1", "local+replicas:1")],
)  # fmt: skip
def test_durability_values(value: str, shown: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBACCOUNT_WORKER_REDIS_DURABILITY", value)
    assert str(Guarantee.parse(load_settings().redis_durability)) == shown


@pytest.mark.parametrize("value", ["fast", "replicas:0", "replicas", "local+none", ""])
def test_bad_durability_is_one_line(value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(redis_durability=value)
    assert str(refused.value) == (
        "SUBACCOUNT_WORKER_REDIS_DURABILITY: must be auto, none, local, replicas:N or"
        " local+replicas:N"
    )


def test_sentinels_are_host_ports_and_need_the_master_name() -> None:
    settings = load_settings(redis_sentinels="s1:26379, [::1]:26380", redis_sentinel_master="m")
    assert settings.redis_sentinels == ["s1:26379", "[::1]:26380"]
    with pytest.raises(ConfigError, match="'s2' is not host:port"):
        load_settings(redis_sentinels="s1:26379,s2", redis_sentinel_master="m")
    with pytest.raises(ConfigError, match="go together"):
        load_settings(redis_sentinels="s1:26379")


GOOD = ServerFacts(waitaof=True, aof=True, appendfsync="always", maxmemory_policy=None, replicas=1)


def test_auto_picks_local_only_where_each_write_is_fsynced() -> None:
    assert str(choose("auto", GOOD)) == "local"
    assert str(choose("auto", ServerFacts(True, True, "everysec", None, 1))) == "none"
    assert str(choose("auto", ServerFacts(False, False, None, None, 0))) == "none"
    # A configured guarantee is kept as said: never upgraded, never downgraded.
    assert str(choose("replicas:1", ServerFacts(False, False, None, None, 0))) == "replicas:1"
    with pytest.raises(ConfigError, match="no WAITAOF"):
        choose("local+replicas:1", ServerFacts(False, False, None, None, 3))
