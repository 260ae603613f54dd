"""SUBACCOUNT_WORKER_REDIS_URL: redis://, rediss:// (TLS) and unix:// accepted; secrets masked."""

from __future__ import annotations

import pytest
import redis

from worker.errors import ConfigError
from worker.settings import load_settings

TLS_URL = "rediss://saw:p%40ss@cache.internal:6380/0?ssl_ca_certs=/etc/ca.crt&ssl_password=kp"


def test_display_masks_the_password_and_the_tls_key_passphrase() -> None:
    shown = load_settings(redis_url=TLS_URL).redis_url_for_display()
    assert (
        shown == "rediss://saw:***@cache.internal:6380/0?ssl_ca_certs=/etc/ca.crt&ssl_password=***"
    )


def test_the_redactor_knows_the_password_as_written_and_decoded() -> None:
    assert {"p%40ss", "p@ss", "kp"} <= set(load_settings(redis_url=TLS_URL).secrets())


def test_tls_options_of_the_url_reach_the_connection() -> None:
    """Every client is built with Redis.from_url(settings.redis_url, ...): the query's ssl_*
    options go through to redis-py's TLS connection."""
    client = redis.Redis.from_url(load_settings(redis_url=TLS_URL).redis_url, socket_timeout=1)
    kwargs = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class is redis.SSLConnection
    assert kwargs["ssl_ca_certs"] == "/etc/ca.crt"
    assert kwargs["password"] == "p@ss"
    client.close()


@pytest.mark.parametrize("url", ["http://redis:6379", "redis-sentinel://x", "localhost:6379"])
def test_other_schemes_are_refused_naming_the_variable(url: str) -> None:
    with pytest.raises(ConfigError, match="SUBACCOUNT_WORKER_REDIS_URL"):
        load_settings(redis_url=url)
