"""Console users: tokens, signed session cookies, the trusted proxy header, and the refusal to
start with nobody able to log in."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from worker.console.auth import Authenticator, Role, token_bits
from worker.console.sessions import SessionStore
from worker.errors import ConfigError
from worker.settings import load_settings

ANN, VIC = "tok-ann-9f2c4e1a7b3d5c8e0f6a2b4c", "tok-vic-1a3b5c7d9e0f2a4b6c8d0e1f"
TOKENS = f"ann:admin:{ANN},vic:viewer:{VIC}"
Auth = Callable[..., Authenticator]


@pytest.fixture
def auth(redis_client: redis.Redis) -> Auth:
    """Build an Authenticator over the test-owned Redis (sessions live there)."""

    def make(**overrides: object) -> Authenticator:
        values: dict[str, object] = {"console_tokens": TOKENS, "console_secret": "s3cret-key-1"}
        values.update(overrides)
        settings = load_settings(**values)
        store = SessionStore(
            redis_client, "t", settings.console_session_ttl_s, settings.console_session_idle_s
        )
        return Authenticator(settings, store)

    return make


def test_a_token_names_its_user_and_role(auth: Auth) -> None:
    """The token is the whole credential; an unknown one is nobody; with a name, only that
    user's token counts."""
    user = auth().by_token(VIC, "bearer")
    assert user is not None
    assert (user.name, user.role) == ("vic", Role.VIEWER)
    assert auth().by_token(VIC + "x", "bearer") is None
    assert auth().by_token(VIC, "session", "vic") is not None
    assert auth().by_token(VIC, "session", "ann") is None


def test_a_session_cookie_round_trips_and_never_holds_the_token(auth: Auth) -> None:
    a = auth()
    user = a.by_token(ANN, "session")
    assert user is not None
    cookie = a.open_session(user)
    assert ANN not in cookie
    assert "ann" not in cookie  # only a random id and its MAC
    back = a.read_session(cookie)
    assert back is not None
    assert (back.name, back.role, back.via) == ("ann", Role.ADMIN, "session")
    assert back.csrf
    assert back.csrf not in cookie


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"),  # another MAC
        lambda c: "x" + c,  # another session id
        lambda c: c.partition(".")[0],  # no MAC
        lambda c: "garbage",
    ],
)
def test_a_tampered_session_is_nobody(auth: Auth, tamper: Callable[[str], str]) -> None:
    a = auth()
    user = a.by_token(ANN, "session")
    assert user is not None
    assert a.read_session(tamper(a.open_session(user))) is None


def test_a_session_expires_and_ends_when_idle(auth: Auth) -> None:
    a = auth(console_session_ttl_s=3600, console_session_idle_s=600)
    user = a.by_token(ANN, "session")
    assert user is not None
    cookie = a.open_session(user, now_s=1000.0)
    assert a.read_session(cookie, now_s=1500.0) is not None  # used: the idle timer restarts
    assert a.read_session(cookie, now_s=2000.0) is not None
    assert a.read_session(cookie, now_s=2601.0) is None  # 601 s unused: ended
    assert a.read_session(cookie, now_s=2000.0) is None  # and gone from Redis, not just late
    absolute = a.open_session(user, now_s=1000.0)
    for at in range(1500, 4600, 500):
        assert a.read_session(absolute, now_s=float(at)) is not None
    assert a.read_session(absolute, now_s=4601.0) is None  # the lifetime is over


def test_changing_a_users_token_or_role_ends_its_sessions(auth: Auth) -> None:
    """The session remembers a fingerprint of the token and the role: change either, it ends."""
    before = auth()
    user = before.by_token(ANN, "session")
    assert user is not None
    rotated = auth(console_tokens=f"ann:admin:{ANN[::-1]},vic:viewer:{VIC}")
    assert rotated.read_session(before.open_session(user)) is None
    demoted = auth(console_tokens=f"ann:viewer:{ANN},vic:viewer:{VIC}")
    assert demoted.read_session(before.open_session(user)) is None
    assert auth().read_session(before.open_session(user)) is not None  # unchanged: still in


def test_an_admin_ends_every_session_of_a_user(auth: Auth) -> None:
    a = auth()
    ann, vic = a.by_token(ANN, "session"), a.by_token(VIC, "session")
    assert ann is not None
    assert vic is not None
    cookies = [a.open_session(ann) for _ in range(3)]
    kept = a.open_session(vic)
    assert a.sessions.end_user("ann") == 3
    assert all(a.read_session(c) is None for c in cookies)
    assert a.read_session(kept) is not None


def test_another_signing_secret_refuses_the_cookie(auth: Auth) -> None:
    user = auth().by_token(ANN, "session")
    assert user is not None
    cookie = auth().open_session(user)
    assert auth(console_secret="another-secret").read_session(cookie) is None


def header_auth(auth: Auth, **more: object) -> Authenticator:
    values: dict[str, object] = {
        "console_tokens": "",
        "console_trusted_user_header": "X-Forwarded-User",
        "console_trusted_roles": "ann@example.com:admin,*:viewer",
        "console_trusted_proxies": "10.0.0.0/8",
    }
    return auth(**{**values, **more})


def test_the_trusted_header_maps_names_to_roles_from_the_proxy_only(auth: Auth) -> None:
    a = header_auth(auth)
    admin = a.by_header("ann@example.com", True, None)
    anyone = a.by_header("bob@example.com", True, None)
    assert admin is not None
    assert admin.role == Role.ADMIN
    assert admin.via == "header"
    assert anyone is not None
    assert anyone.role == Role.VIEWER
    assert a.by_header("", True, None) is None
    assert a.by_header("ann@example.com", False, None) is None  # not from a proxy: nobody


def test_the_trusted_header_needs_the_proxy_secret_when_set(auth: Auth) -> None:
    a = header_auth(auth, console_proxy_secret="proxy-shared-secret-7c1e")
    assert a.by_header("ann@example.com", True, None) is None
    assert a.by_header("ann@example.com", True, "wrong") is None
    assert a.by_header("ann@example.com", True, "proxy-shared-secret-7c1e") is not None


def test_the_trusted_header_needs_proxy_addresses(auth: Auth) -> None:
    with pytest.raises(ConfigError, match="CONSOLE_TRUSTED_PROXIES"):
        header_auth(auth, console_trusted_proxies="")


def test_token_login_is_off_behind_the_proxy_unless_allowed(auth: Auth) -> None:
    off = header_auth(auth, console_tokens=TOKENS)
    assert not off.accepts_tokens
    assert off.by_token(ANN, "bearer") is None
    on = header_auth(auth, console_tokens=TOKENS, console_token_login_with_header=True)
    assert on.by_token(ANN, "bearer") is not None


def test_a_header_users_session_has_its_own_csrf_and_follows_the_header(auth: Auth) -> None:
    """Two sessions of one header user have different CSRF tokens; the session ends when the
    proxy names another user."""
    a = header_auth(auth)
    ann = a.by_header("ann@example.com", True, None)
    bob = a.by_header("bob@example.com", True, None)
    assert ann is not None
    assert bob is not None
    first, second = a.open_session(ann), a.open_session(ann)
    one, two = a.read_session(first, None, ann), a.read_session(second, None, ann)
    assert one is not None
    assert two is not None
    assert one.csrf != two.csrf
    assert a.read_session(first, None, bob) is None
    assert a.read_session(first, None, ann) is None  # ended, not merely refused once


def test_the_trusted_header_without_a_default_refuses_strangers(auth: Auth) -> None:
    a = header_auth(auth, console_trusted_roles="ann:operator")
    assert a.by_header("mallory", True, None) is None


def test_the_console_refuses_to_start_with_no_users(auth: Auth) -> None:
    with pytest.raises(ConfigError, match="CONSOLE_TOKENS"):
        auth(console_tokens="")


@pytest.mark.parametrize(
    "weak", ["x", "tok-ann-123456", "a" * 64, "0123456789abcdef0123456789abcde"]
)
def test_weak_tokens_are_refused_at_start_with_how_to_make_one(auth: Auth, weak: str) -> None:
    with pytest.raises(ConfigError) as caught:
        auth(console_tokens=f"ann:admin:{weak}")
    message = str(caught.value)
    assert "128" in message
    assert "secrets.token_urlsafe(32)" in message
    assert "'ann'" in message
    assert weak not in message.replace("'ann'", "")
    assert "\n" not in message


def test_generated_tokens_are_strong_enough() -> None:
    import secrets

    assert token_bits(secrets.token_urlsafe(32)) >= 128
    assert token_bits(secrets.token_hex(16)) >= 128
    assert token_bits(secrets.token_urlsafe(8)) < 128


def test_a_malformed_token_setting_names_the_entry_not_the_token() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(console_tokens="ann:superuser:tok-leak-99999")
    assert "entry 1" in str(caught.value)
    assert "tok-leak-99999" not in str(caught.value)


def test_console_tokens_and_secrets_are_redacted_from_logs() -> None:
    settings = load_settings(
        console_tokens=TOKENS, console_secret="s3cret-key-1", console_proxy_secret="px-secret-9"
    )
    assert {ANN, VIC, "s3cret-key-1", "px-secret-9"} <= set(settings.secrets())
