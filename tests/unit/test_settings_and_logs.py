"""Settings fail with one clear line; logs are structured, carry context and hide secrets."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from worker.errors import ConfigError
from worker.log import SecretRedactor, configure_logging, get_logger
from worker.settings import LogFormat, load_settings

KEY = "sk-live-0123456789abcdef"


def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid value ends in one line naming the environment variable, not a traceback."""
    monkeypatch.setenv("SUBACCOUNT_WORKER_API_SURFACE", "v7")
    monkeypatch.setenv("SUBACCOUNT_WORKER_WORKER_THREADS", "zero")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "SUBACCOUNT_WORKER_API_SURFACE" in message
    assert "SUBACCOUNT_WORKER_WORKER_THREADS" in message
    assert "\n" not in message


def test_secrets_are_hidden_when_settings_are_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    """SecretStr keeps the API key and webhook secrets out of dumps and reprs."""
    monkeypatch.setenv("SUBACCOUNT_WORKER_API_KEY", KEY)
    monkeypatch.setenv("SUBACCOUNT_WORKER_INGRESS_TOKENS", "tok-aaaa1111,tok-bbbb2222")
    settings = load_settings()
    assert [t.get_secret_value() for t in settings.ingress_tokens] == [
        "tok-aaaa1111",
        "tok-bbbb2222",
    ]
    shown = settings.model_dump_json() + repr(settings)
    assert KEY not in shown
    assert "tok-aaaa1111" not in shown


def test_redactor_hides_values_and_secret_keys() -> None:
    """Known secret values vanish anywhere in a line; secret-named keys are masked whole."""
    redact = SecretRedactor([KEY])
    line = redact(
        None,
        "info",
        {
            "event": "call",
            "url": f"http://x/?k={KEY}",
            "password": "hunter2",
            "nested": {"api_key": "x", "n": [KEY]},
        },
    )
    dumped = json.dumps(line)
    assert KEY not in dumped
    assert "hunter2" not in dumped
    assert line["password"] == "[REDACTED]"
    assert line["nested"]["api_key"] == "[REDACTED]"
    assert line["event"] == "call"


def test_json_logs_carry_event_context_and_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production logs are JSON lines with the bound event context; the key never shows."""
    monkeypatch.setenv("SUBACCOUNT_WORKER_API_KEY", KEY)
    stream = io.StringIO()
    configure_logging(load_settings(log_format=LogFormat.JSON), stream=stream)
    try:
        structlog.contextvars.bind_contextvars(event_id="e1", client_id="c1", event_type="t")
        get_logger("test").info("step.done", step="create", header=f"Bearer {KEY}")
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()
    record = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert record["event"] == "step.done"
    assert record["step"] == "create"
    assert (record["event_id"], record["client_id"], record["event_type"]) == ("e1", "c1", "t")
    assert KEY not in stream.getvalue()


def test_lease_must_outlive_a_step() -> None:
    """A lock TTL shorter than two calls' timeouts is refused, naming the variables."""
    with pytest.raises(ConfigError, match="SUBACCOUNT_WORKER_LOCK_TTL_MS"):
        load_settings(lock_ttl_ms=60_000)  # 3 x (5 + 3 + 5 + 10) s = 69 s needed
    fast = {"api_pool_timeout_s": 1, "api_connect_timeout_s": 1, "api_write_timeout_s": 1}
    assert load_settings(lock_ttl_ms=12_000, api_read_timeout_s=1, **fast)


def test_redis_password_is_masked_and_redacted() -> None:
    """A password in the Redis URL is never printed and is known to the log redactor."""
    settings = load_settings(redis_url="redis://:s3cretpw@redis:6379/0")
    assert settings.redis_url_for_display() == "redis://:***@redis:6379/0"
    assert "s3cretpw" in settings.secrets()


def test_workers_refuse_to_start_without_an_api_key() -> None:
    """Without a key every call would be a 401 dead letter: refuse at start instead."""
    with pytest.raises(ConfigError, match="SUBACCOUNT_WORKER_API_KEY"):
        load_settings(api_key="").require_api_key()
