"""Console sessions kept in Redis, so they can end: at logout, by an admin, when idle.

The cookie holds only a random session id (signed by `Authenticator`); the record here holds
who it is, the role and token fingerprint it was opened with (a changed role or token ends it),
its absolute expiry and when it was last used (the idle timeout). Each user's session ids are
kept in a set, so "log out everywhere" ends them all at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import redis

from worker import keys


@dataclass(frozen=True)
class SessionRecord:
    """What a session was opened with; `fingerprint` ties it to the token (or the proxy)."""

    id: str
    name: str
    role: str
    via: str
    fingerprint: str
    expires_s: float
    last_seen_s: float


class SessionStore:
    """Opens, reads (refreshing the idle timer) and ends sessions in Redis."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int, idle_s: int) -> None:
        self.redis = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.idle_s = idle_s

    def open(self, name: str, role: str, via: str, fingerprint: str, now_s: float) -> str:
        """A new session's id (random, 192 bits)."""
        session_id = secrets.token_urlsafe(24)
        record: dict[str, str] = {
            "name": name,
            "role": role,
            "via": via,
            "fingerprint": fingerprint,
            "expires_s": repr(now_s + self.ttl_s),
            "last_seen_s": repr(now_s),
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys.console_session(self.prefix, session_id), mapping=dict(record))  # type: ignore[arg-type]
        pipe.expire(keys.console_session(self.prefix, session_id), self._expiry(now_s, record))
        pipe.sadd(keys.console_user_sessions(self.prefix, name), session_id)
        pipe.expire(keys.console_user_sessions(self.prefix, name), self.ttl_s)
        pipe.execute()
        return session_id

    def read(self, session_id: str, now_s: float) -> SessionRecord | None:
        """The live session `session_id` (its idle timer restarted), or None: unknown, ended,
        expired or idle too long (then it is ended here)."""
        key = keys.console_session(self.prefix, session_id)
        raw: Any = self.redis.hgetall(key)
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        try:
            record = SessionRecord(
                session_id,
                fields["name"],
                fields["role"],
                fields["via"],
                fields["fingerprint"],
                float(fields["expires_s"]),
                float(fields["last_seen_s"]),
            )
        except (KeyError, ValueError):
            self.end(session_id)
            return None
        if now_s >= record.expires_s or now_s - record.last_seen_s > self.idle_s:
            self.end(session_id, record.name)
            return None
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, "last_seen_s", repr(now_s))
        pipe.expire(key, self._expiry(now_s, fields))
        pipe.execute()
        return record

    def end(self, session_id: str, name: str | None = None) -> None:
        """End one session (logout, or found stale)."""
        key = keys.console_session(self.prefix, session_id)
        if name is None:
            found: Any = self.redis.hget(key, "name")
            name = _text(found) if found is not None else None
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        if name is not None:
            pipe.srem(keys.console_user_sessions(self.prefix, name), session_id)
        pipe.execute()

    def end_user(self, name: str) -> int:
        """End every session of `name` ("log out everywhere"); how many were live."""
        members: Any = self.redis.smembers(keys.console_user_sessions(self.prefix, name))
        ids = [_text(m) for m in members]
        pipe = self.redis.pipeline(transaction=True)
        for session_id in ids:
            pipe.delete(keys.console_session(self.prefix, session_id))
        pipe.delete(keys.console_user_sessions(self.prefix, name))
        deleted = pipe.execute()
        return sum(int(n) for n in deleted[: len(ids)])

    def _expiry(self, now_s: float, record: dict[str, str]) -> int:
        """Seconds the key lives: until idle, never past the absolute expiry."""
        left = float(record["expires_s"]) - now_s
        return max(1, int(min(self.idle_s, left)) + 1)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
