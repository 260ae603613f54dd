"""Structured logging: structlog with secret redaction, JSON in production, pretty on a terminal.

Every log line is a dict with a stable `event` name. Context (`event_id`, `client_id`,
`event_type`, `step`) is bound once per message through contextvars. The redaction processor runs
last before rendering, so no code path can print a secret by accident.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from worker.settings import LogFormat, Settings
from worker.tracing import configure_tracing, enabled, log_ids

REDACTED = "[REDACTED]"
# user:password@ in any URL a log line carries (the notification URL, a library's error text).
URL_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")
TRACING_SERVICE = "subaccount-worker"  # OTEL_SERVICE_NAME overrides it
# Keys whose values are secret whatever they hold.
SECRET_KEYS = re.compile(
    r"(pass(word)?|secret|token|api[_-]?key|authorization|signature|credential)", re.IGNORECASE
)


class SecretRedactor:
    """A structlog processor that hides known secret values and the values of secret-named keys."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Register more secret values (e.g. a generated password) to be hidden from now on."""
        self._secrets.update(s for s in secrets if s and len(s) >= 4)
        if self._secrets:
            alternatives = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in alternatives))

    def scrub(self, value: Any) -> Any:
        """Return `value` with every registered secret replaced, recursing into containers."""
        if isinstance(value, str):
            if "://" in value:
                value = URL_USERINFO.sub("***@", value)
            return self._pattern.sub(REDACTED, value) if self._pattern else value
        if isinstance(value, MutableMapping):
            return {k: REDACTED if _secret_key(k) else self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        if isinstance(value, BaseException):
            return self.scrub(repr(value))
        return value

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        return {
            key: REDACTED if _secret_key(key) else self.scrub(value)
            for key, value in event_dict.items()
        }


@functools.lru_cache(maxsize=4096)
def _secret_key(key: object) -> bool:
    """Is `key` secret-named? Cached: log keys repeat, and the search was half a line's cost."""
    return isinstance(key, str) and bool(SECRET_KEYS.search(key))


# One redactor per process, knowing the configured secrets. Generated passwords never reach a
# log line (they live in one request model, a SecretStr); secret-named keys are masked anyway.
redactor = SecretRedactor()


def configure_logging(settings: Settings, *, stream: Any = None) -> None:
    """Configure structlog (and the stdlib root logger, for libraries) from `settings`."""
    stream = stream or sys.stderr
    redactor.add(*settings.secrets())
    pretty = settings.log_format == LogFormat.CONSOLE or (
        settings.log_format == LogFormat.AUTO and hasattr(stream, "isatty") and stream.isatty()
    )
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=True)
        if pretty
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    level = logging.getLevelNamesMapping()[settings.log_level]
    if settings.tracing and not enabled():
        configure_tracing(TRACING_SERVICE)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        log_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processor=renderer)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO; our own step lines already say what was called.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))


def get_logger(name: str) -> Any:
    """A structlog logger tagged with the module `name`."""
    return structlog.get_logger(logger_name=name)
