"""Who is asking: console users, their roles, signed session cookies and the trusted proxy header.

Users come from `console_tokens` (`name:role:token`). A login exchanges a token for a session
cookie `name|role|expiry|fingerprint|mac`, where the fingerprint is an HMAC of the user's token:
changing or removing a token ends its sessions at once, and the cookie never holds the token.
The MAC is HMAC-SHA256 under `console_secret`. The CSRF token of a session is another HMAC of
the cookie, so it needs no storage and dies with the session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from worker.errors import ConfigError
from worker.settings import ENV_PREFIX, Settings

SESSION_COOKIE = "saw_console"
Via = Literal["session", "bearer", "header"]


class Role(IntEnum):
    """What a user may do; each role may do everything the ones below it may."""

    VIEWER = 1  # read only
    OPERATOR = 2  # replay, resolve, cancel jobs
    ADMIN = 3  # also purge, import, reconcile fix

    @classmethod
    def parse(cls, name: str) -> Role:
        return cls[name.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    via: Via
    csrf: str = ""

    def may(self, role: Role) -> bool:
        return self.role >= role

    @property
    def may_operate(self) -> bool:
        return self.may(Role.OPERATOR)

    @property
    def may_admin(self) -> bool:
        return self.may(Role.ADMIN)


@dataclass(frozen=True)
class _Account:
    name: str
    role: Role
    token: str


class Authenticator:
    """Checks tokens, signs and reads session cookies, maps trusted-header users to roles."""

    def __init__(self, settings: Settings) -> None:
        self._accounts = [_parse_account(t.get_secret_value()) for t in settings.console_tokens]
        self.header = settings.console_trusted_user_header.strip()
        self._header_roles = dict(_split_role(e) for e in settings.console_trusted_roles)
        if not self._accounts and not self.header:
            raise ConfigError(
                f"the console needs users: set {ENV_PREFIX}CONSOLE_TOKENS (name:role:token,...) "
                f"or {ENV_PREFIX}CONSOLE_TRUSTED_USER_HEADER behind an auth proxy"
            )
        configured = settings.console_secret.get_secret_value()
        self._key = (configured or secrets.token_urlsafe(32)).encode()
        self.ttl_s = settings.console_session_ttl_s

    @property
    def accepts_tokens(self) -> bool:
        return bool(self._accounts)

    def by_token(self, token: str, via: Via) -> User | None:
        """The user whose token this is (constant-time comparison against each), or None."""
        found = None
        for account in self._accounts:
            if hmac.compare_digest(account.token.encode(), token.encode()):
                found = account
        if found is None:
            return None
        return User(found.name, found.role, via)

    def open_session(self, user: User, now_s: float | None = None) -> str:
        """The cookie value for a user who just logged in with a token."""
        account = self._account(user.name)
        expiry = int((now_s or time.time()) + self.ttl_s)
        body = f"{_b64(user.name)}|{user.role.label}|{expiry}|{self._fingerprint(account)}"
        return f"{body}|{self._mac('session', body)}"

    def read_session(self, cookie: str, now_s: float | None = None) -> User | None:
        """The user of a valid, unexpired session whose token is still configured, else None."""
        body, _, mac = cookie.rpartition("|")
        if not body or not hmac.compare_digest(mac, self._mac("session", body)):
            return None
        try:
            name_b64, role, expiry, fingerprint = body.split("|")
            name = _unb64(name_b64)
            expired = int(expiry) < (now_s or time.time())
        except ValueError:
            return None
        account = self._account(name)
        if expired or account is None or account.role.label != role:
            return None
        if not hmac.compare_digest(fingerprint, self._fingerprint(account)):
            return None
        return User(account.name, account.role, "session", self._mac("csrf", cookie))

    def by_header(self, value: str | None) -> User | None:
        """The user an auth proxy vouches for, if the header is configured and names a role."""
        name = (value or "").strip()
        if not self.header or not name:
            return None
        role = self._header_roles.get(name) or self._header_roles.get("*")
        if role is None:
            return None
        return User(name, role, "header", self._mac("csrf", f"header|{name}"))

    def _account(self, name: str) -> _Account | None:
        return next((a for a in self._accounts if a.name == name), None)

    def _fingerprint(self, account: _Account | None) -> str:
        token = account.token if account else ""
        return self._mac("token", token)[:16]

    def _mac(self, purpose: str, text: str) -> str:
        digest = hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _parse_account(entry: str) -> _Account:
    name, role, token = entry.split(":", 2)  # the settings validated the shape
    return _Account(name, Role.parse(role), token)


def _split_role(entry: str) -> tuple[str, Role]:
    name, _, role = entry.rpartition(":")
    return name, Role.parse(role)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("bad name") from exc
