"""Refuse, at start, a Redis that will not accept our credentials.

Redis in production requires an ACL user and password (deploy/redis/users.acl.template). A process
started without them, or with wrong ones, would otherwise retry forever (the worker) or stay
unready without saying why (the ingress). A Redis that is merely down is not refused here: the
worker waits for it and the ingress reports itself unready until it answers.
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError
from redis.retry import Retry

from worker.errors import ConfigError
from worker.settings import ENV_PREFIX, Settings

CHECK_TIMEOUT_S = 3.0


def verify_credentials(settings: Settings) -> None:
    """PING Redis with the configured URL; raise ConfigError if it refuses who we are."""
    client = redis.Redis.from_url(
        settings.redis_url,
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
    finally:
        client.close()
