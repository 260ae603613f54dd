"""How every process reaches Redis: one connection factory (plain URL or Sentinel), and the
start-up refusal of a Redis that will not accept our credentials.

`connect` is the one place a client is made from settings (the broker, the stores, the ingress,
the console, the monitor, the CLI). With `SUBACCOUNT_WORKER_REDIS_SENTINELS` and
`..._REDIS_SENTINEL_MASTER` set it asks the sentinels for the master (redis-py's Sentinel client):
a connection that fails, or finds its server demoted to a replica (READONLY), is dropped and the
next one goes to the master the sentinels name then, so every process follows a failover. The
user, password, database and TLS options come from `SUBACCOUNT_WORKER_REDIS_URL` in both cases.

Redis in production requires an ACL user and password (deploy/redis/users.acl.template). A process
started without them, or with wrong ones, would otherwise retry forever (the worker) or stay
unready without saying why (the ingress). A Redis that is merely down is not refused here: the
worker waits for it and the ingress reports itself unready until it answers.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import SSLConnection, parse_url
from redis.exceptions import NoPermissionError
from redis.retry import Retry
from redis.sentinel import Sentinel

from worker import durability
from worker.errors import ConfigError
from worker.settings import ENV_PREFIX, Settings

CHECK_TIMEOUT_S = 3.0
SENTINEL_TIMEOUT_S = 1.0  # a sentinel that does not answer in this is skipped for the next one


def connect(
    settings: Settings, *, url: str | None = None, blocking_s: float = 0.0, **options: Any
) -> redis.Redis:
    """A client of the Redis `settings` name (through Sentinel when configured), as the user and
    database of `url` (another role's or the broker's URL; default REDIS_URL). `options` are
    redis-py's (timeouts, max_connections, retry...); `blocking_s` > 0 makes a full pool wait that
    long for a free connection instead of failing (plain URL only: Sentinel's pool never waits)."""
    url = url or settings.redis_url
    if settings.redis_sentinels:
        return _via_sentinel(settings, url, options)
    if blocking_s > 0:
        pool = redis.BlockingConnectionPool.from_url(url, timeout=blocking_s, **options)
        return redis.Redis(connection_pool=pool)
    return redis.Redis.from_url(url, **options)


def _via_sentinel(settings: Settings, url: str, options: dict[str, Any]) -> redis.Redis:
    """The master named `redis_sentinel_master`, found through `redis_sentinels`, with the
    credentials, database and TLS options of `url` (its host and port are not used)."""
    kwargs: dict[str, Any] = {**parse_url(url), **options}  # type: ignore[no-untyped-call]
    for unused in ("host", "port", "path"):
        kwargs.pop(unused, None)
    if kwargs.pop("connection_class", None) is SSLConnection:
        kwargs["ssl"] = True
    sentinels = [_host_port(entry) for entry in settings.redis_sentinels]
    sentinel_kwargs: dict[str, Any] = {  # each sentinel asked once: the next one is the retry
        "socket_timeout": SENTINEL_TIMEOUT_S,
        "socket_connect_timeout": SENTINEL_TIMEOUT_S,
        "retry": Retry(NoBackoff(), 0),
    }
    if settings.redis_sentinel_password.get_secret_value():
        sentinel_kwargs["password"] = settings.redis_sentinel_password.get_secret_value()
    manager = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    master = manager.master_for  # (untyped in redis-py)
    client: redis.Redis = master(settings.redis_sentinel_master, **kwargs)  # type: ignore[no-untyped-call]
    return client


def _host_port(entry: str) -> tuple[str, int]:
    host, _, port = entry.rpartition(":")
    return host.strip("[]"), int(port)


def verify_credentials(settings: Settings) -> None:
    """PING Redis with the configured URL; raise ConfigError if it refuses who we are, or cannot
    keep writes as `SUBACCOUNT_WORKER_REDIS_DURABILITY` asks (worker/durability.py), whose choice
    and warnings are logged here, one line each."""
    client = connect(
        settings,
        socket_connect_timeout=CHECK_TIMEOUT_S,
        socket_timeout=CHECK_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),  # one answer is enough to judge
    )
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise ConfigError(
            f"Redis at {settings.redis_url_for_display()} refused our credentials ({exc}):"
            f" set {ENV_PREFIX}REDIS_URL with the application's ACL user and password,"
            " e.g. redis://saw:PASSWORD@host:6379/0 (see deploy/README.md)"
        ) from None
    except NoPermissionError as exc:
        raise ConfigError(
            f"Redis at {settings.redis_url_for_display()} denies this user PING ({exc}):"
            " give it the commands of deploy/redis/users.acl.template"
        ) from None
    except redis.RedisError:
        return  # down or unreachable: waited for, not refused
    else:
        durability.check_at_start(settings, client)
    finally:
        client.close()
