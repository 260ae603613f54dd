"""The Redis URLs of the settings: the broker's database and the read-only user's URL."""

from __future__ import annotations

import pytest
import redis

from worker.errors import ConfigError
from worker.settings import load_settings, redis_url_db, with_redis_db


@pytest.mark.parametrize(
    ("url", "db", "broker"),
    [
        ("redis://u:p@h:6379/0", 0, "redis://u:p@h:6379/1"),
        ("redis://h:6379", 0, "redis://h:6379/1"),
        ("redis://h:6379/4", 4, "redis://h:6379/1"),
        (
            "rediss://u:p@h:6380/2?ssl_ca_certs=/ca.crt",
            2,
            "rediss://u:p@h:6380/1?ssl_ca_certs=/ca.crt",
        ),
        ("unix:///run/redis.sock?db=3&password=p", 3, "unix:///run/redis.sock?password=p&db=1"),
        ("redis://h:6379/0?db=5", 5, "redis://h:6379/0?db=1"),  # redis-py: ?db= wins
    ],
)
def test_the_broker_url_is_the_same_server_in_its_own_database(
    url: str, db: int, broker: str
) -> None:
    settings = load_settings(redis_url=url)
    assert settings.redis_db == db == redis.connection.parse_url(url).get("db", 0)
    assert settings.broker_url() == broker
    assert redis_url_db(with_redis_db(url, 7)) == 7


def test_the_read_only_url_is_a_secret_and_optional() -> None:
    read = "redis://saw-reader:r3ad-pw@h:6379/0"
    settings = load_settings(redis_url="redis://saw-console:c0nsole-pw@h/0", redis_read_url=read)
    assert settings.redis_read_url_or_default() == read
    assert "r3ad-pw" not in settings.redis_read_url_for_display()
    assert "r3ad-pw" in settings.secrets()  # the log redactor hides it
    alone = load_settings(redis_url="redis://saw-console:c0nsole-pw@h/0")
    assert alone.redis_read_url_or_default() == alone.redis_url


def test_the_redis_url_stays_required() -> None:
    with pytest.raises(ConfigError, match="SUBACCOUNT_WORKER_REDIS_URL"):
        load_settings(redis_url="")


def test_a_read_url_that_is_not_redis_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(redis_read_url="http://saw-reader:pw@h/0")
    assert "SUBACCOUNT_WORKER_REDIS_READ_URL" in str(refused.value)
    assert "pw@" not in str(refused.value)
