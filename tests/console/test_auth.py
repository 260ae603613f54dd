"""Console users: tokens, signed session cookies, the trusted proxy header, and the refusal to
start with nobody able to log in."""

from __future__ import annotations

import pytest

from worker.console.auth import Authenticator, Role
from worker.errors import ConfigError
from worker.settings import load_settings

TOKENS = "ann:admin:tok-ann-123456,vic:viewer:tok-vic-123456"


def auth(**overrides: object) -> Authenticator:
    values: dict[str, object] = {"console_tokens": TOKENS, "console_secret": "s3cret-key-1"}
    values.update(overrides)
    return Authenticator(load_settings(**values))


def test_a_token_names_its_user_and_role() -> None:
    """The token is the whole credential; an unknown one is nobody."""
    user = auth().by_token("tok-vic-123456", "bearer")
    assert user is not None
    assert (user.name, user.role) == ("vic", Role.VIEWER)
    assert auth().by_token("tok-vic-1234567", "bearer") is None


def test_a_session_cookie_round_trips_and_never_holds_the_token() -> None:
    a = auth()
    user = a.by_token("tok-ann-123456", "session")
    assert user is not None
    cookie = a.open_session(user)
    assert "tok-ann-123456" not in cookie
    back = a.read_session(cookie)
    assert back is not None
    assert (back.name, back.role, back.via) == ("ann", Role.ADMIN, "session")
    assert back.csrf
    assert back.csrf not in cookie


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: c.replace("|admin|", "|viewer|"),  # another role
        lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"),  # another MAC
        lambda c: "x" + c,  # another name
        lambda c: "garbage",
    ],
)
def test_a_tampered_session_is_nobody(tamper: object) -> None:
    a = auth()
    user = a.by_token("tok-ann-123456", "session")
    assert user is not None
    assert a.read_session(tamper(a.open_session(user))) is None  # type: ignore[operator]


def test_a_session_expires() -> None:
    a = auth(console_session_ttl_s=60)
    user = a.by_token("tok-ann-123456", "session")
    assert user is not None
    cookie = a.open_session(user, now_s=1000.0)
    assert a.read_session(cookie, now_s=1059.0) is not None
    assert a.read_session(cookie, now_s=1061.0) is None


def test_changing_a_users_token_ends_its_sessions() -> None:
    """The cookie carries a fingerprint of the token: rotate the token, the session is gone."""
    before = auth()
    user = before.by_token("tok-ann-123456", "session")
    assert user is not None
    cookie = before.open_session(user)
    after = auth(console_tokens="ann:admin:tok-ann-rotated9,vic:viewer:tok-vic-123456")
    assert after.read_session(cookie) is None


def test_another_signing_secret_refuses_the_cookie() -> None:
    user = auth().by_token("tok-ann-123456", "session")
    assert user is not None
    cookie = auth().open_session(user)
    assert auth(console_secret="another-secret").read_session(cookie) is None


def test_the_trusted_header_maps_names_to_roles() -> None:
    a = auth(
        console_tokens="",
        console_trusted_user_header="X-Forwarded-User",
        console_trusted_roles="ann@example.com:admin,*:viewer",
    )
    admin = a.by_header("ann@example.com")
    anyone = a.by_header("bob@example.com")
    assert admin is not None
    assert admin.role == Role.ADMIN
    assert admin.via == "header"
    assert anyone is not None
    assert anyone.role == Role.VIEWER
    assert a.by_header("") is None


def test_the_trusted_header_without_a_default_refuses_strangers() -> None:
    a = auth(console_trusted_user_header="X-User", console_trusted_roles="ann:operator")
    assert a.by_header("mallory") is None


def test_the_console_refuses_to_start_with_no_users() -> None:
    with pytest.raises(ConfigError, match="CONSOLE_TOKENS"):
        auth(console_tokens="")


def test_a_malformed_token_setting_names_the_entry_not_the_token() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(console_tokens="ann:superuser:tok-leak-99999")
    assert "entry 1" in str(caught.value)
    assert "tok-leak-99999" not in str(caught.value)


def test_console_tokens_and_secret_are_redacted_from_logs() -> None:
    settings = load_settings(console_tokens=TOKENS, console_secret="s3cret-key-1")
    assert {"tok-ann-123456", "tok-vic-123456", "s3cret-key-1"} <= set(settings.secrets())
