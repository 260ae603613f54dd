"""Who is asking: console users, their roles, sessions, and the trusted proxy header.

Users come from `console_tokens` (`name:role:token`; each token at least 128 bits of entropy,
checked at start). A login exchanges a user's name and token for a session kept in Redis
(`sessions.py`); the cookie holds only the session's random id and an HMAC of it under
`console_secret`. The session remembers a fingerprint of the token and the role: changing either
ends it. The CSRF token of a session is another HMAC of its id, so it dies with the session.
Behind an auth proxy, the trusted header is believed only from `console_trusted_proxies` (and
with the proxy's shared secret when one is set); its users get a session and CSRF token too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import string
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from worker.console.sessions import SessionStore
from worker.errors import ConfigError
from worker.settings import ENV_PREFIX, Settings

SESSION_COOKIE = "saw_console"
MIN_TOKEN_BITS = 128
MAKE_TOKEN = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105
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
    session_id: str = ""

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
    """Checks tokens, opens, reads and ends sessions, believes the proxy's header when due."""

    def __init__(self, settings: Settings, sessions: SessionStore) -> None:
        self._accounts = [_parse_account(t.get_secret_value()) for t in settings.console_tokens]
        self.header = settings.console_trusted_user_header.strip()
        self._header_roles = dict(_split_role(e) for e in settings.console_trusted_roles)
        self._proxy_secret = settings.console_proxy_secret.get_secret_value()
        self.proxy_secret_header = settings.console_proxy_secret_header
        _check_users(settings, self._accounts, self.header)
        self.token_login = bool(self._accounts) and (
            not self.header or settings.console_token_login_with_header
        )
        configured = settings.console_secret.get_secret_value()
        self._key = (configured or secrets.token_urlsafe(32)).encode()
        self.ttl_s = settings.console_session_ttl_s
        self.sessions = sessions

    @property
    def accepts_tokens(self) -> bool:
        """Whether the login form and Bearer tokens are on (off behind the proxy by default)."""
        return self.token_login

    def by_token(self, token: str, via: Via, name: str | None = None) -> User | None:
        """The user whose token this is (constant-time comparison against each; with `name`,
        only that user's token counts), or None."""
        if not self.token_login:
            return None
        found = None
        for account in self._accounts:
            if hmac.compare_digest(account.token.encode(), token.encode()):
                found = account
        if found is None or (name is not None and found.name != name):
            return None
        return User(found.name, found.role, via)

    def open_session(self, user: User, now_s: float | None = None) -> str:
        """The cookie value of a new session for `user` (after a login, or a proxy's user)."""
        fingerprint = "header" if user.via == "header" else self._fingerprint(user.name)
        session_id = self.sessions.open(
            user.name, user.role.label, user.via, fingerprint, now_s or time.time()
        )
        return f"{session_id}.{self._mac('session', session_id)}"

    def read_session(
        self, cookie: str, now_s: float | None = None, proxied: User | None = None
    ) -> User | None:
        """The user of a live session, or None. A token user's session needs the same token
        and role as when it opened; a proxy user's, the proxy naming the same user and role."""
        session_id, _, mac = cookie.partition(".")
        if not session_id or not hmac.compare_digest(mac, self._mac("session", session_id)):
            return None
        record = self.sessions.read(session_id, now_s or time.time())
        if record is None:
            return None
        if record.via == "header":
            still = proxied is not None and (proxied.name, proxied.role.label) == (
                record.name,
                record.role,
            )
        else:
            account = self._account(record.name)
            still = (
                self.token_login
                and account is not None
                and account.role.label == record.role
                and hmac.compare_digest(record.fingerprint, self._fingerprint(record.name))
            )
        if not still:
            self.sessions.end(session_id, record.name)
            return None
        via: Via = "header" if record.via == "header" else "session"
        role = Role.parse(record.role)
        return User(record.name, role, via, self._mac("csrf", session_id), session_id)

    def by_header(self, value: str | None, from_proxy: bool, secret: str | None) -> User | None:
        """The user an auth proxy vouches for: only from a trusted proxy address, with the
        proxy's secret when one is configured, and only a name that maps to a role."""
        name = (value or "").strip()
        if not self.header or not name or not from_proxy:
            return None
        if self._proxy_secret and not hmac.compare_digest(
            (secret or "").encode(), self._proxy_secret.encode()
        ):
            return None
        role = self._header_roles.get(name) or self._header_roles.get("*")
        if role is None:
            return None
        return User(name, role, "header")

    def _account(self, name: str) -> _Account | None:
        return next((a for a in self._accounts if a.name == name), None)

    def _fingerprint(self, name: str) -> str:
        account = self._account(name)
        return self._mac("token", account.token if account else "")[:16]

    def _mac(self, purpose: str, text: str) -> str:
        digest = hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _check_users(settings: Settings, accounts: list[_Account], header: str) -> None:
    """Refuse to start with nobody able to log in, a header without proxies, or weak tokens."""
    if not accounts and not header:
        raise ConfigError(
            f"the console needs users: set {ENV_PREFIX}CONSOLE_TOKENS (name:role:token,...) "
            f"or {ENV_PREFIX}CONSOLE_TRUSTED_USER_HEADER behind an auth proxy"
        )
    if header and not settings.console_trusted_proxies:
        raise ConfigError(
            f"{ENV_PREFIX}CONSOLE_TRUSTED_USER_HEADER needs {ENV_PREFIX}CONSOLE_TRUSTED_PROXIES"
            " (the proxy's addresses, CIDRs): anyone else could send the header"
        )
    for account in accounts:
        bits = token_bits(account.token)
        if bits < MIN_TOKEN_BITS:
            raise ConfigError(
                f"{ENV_PREFIX}CONSOLE_TOKENS: the token of {account.name!r} has about"
                f" {bits:.0f} bits of entropy, {MIN_TOKEN_BITS} needed: make one with {MAKE_TOKEN}"
            )


def token_bits(token: str) -> float:
    """An estimate of a token's entropy: its length times log2 of the alphabet its characters
    come from (hex, letters, digits, symbols); a token of few distinct characters counts those."""
    if not token:
        return 0.0
    if set(token) <= set(string.hexdigits.lower()) or set(token) <= set(string.hexdigits.upper()):
        alphabet = 16
    else:
        alphabet = sum(
            size
            for chars, size in (
                (string.ascii_lowercase, 26),
                (string.ascii_uppercase, 26),
                (string.digits, 10),
                ("-_", 2),
            )
            if any(c in chars for c in token)
        )
        if any(c not in string.ascii_letters + string.digits + "-_" for c in token):
            alphabet += 32
    distinct = len(set(token))
    if distinct < 10:
        alphabet = min(alphabet, max(distinct, 1))
    return len(token) * math.log2(alphabet) if alphabet > 1 else 0.0


def _parse_account(entry: str) -> _Account:
    name, role, token = entry.split(":", 2)  # the settings validated the shape
    return _Account(name, Role.parse(role), token)


def _split_role(entry: str) -> tuple[str, Role]:
    name, _, role = entry.rpartition(":")
    return name, Role.parse(role)
