"""Every error subaccount-worker raises, drawn once.

    InvalidEvent                 (handlers.errors) an event failed validation: fix the sender;
                                 nothing enqueued. Raised by the pure catalogue, which imports
                                 nothing of worker/, so it is not a SubaccountWorkerError.
    SubaccountWorkerError        base of everything below
    ├── ConfigError              a setting is missing or invalid: fix the environment
    ├── BrokerUnavailable        Redis could not be reached: retry later, nothing half-done
    └── ApiError                 the Subaccount API call did not succeed
        ├── Transient            5xx, 429, connect failure: retry later (`retry_after`)
        ├── Permanent            400/401/403: will never succeed as sent; dead-letter
        │   ├── NotFound         404: the subaccount does not exist
        │   └── Conflict         the username is taken
        └── Ambiguous            sent, but no answer: may or may not have been applied
            └── MalformedResponse  2xx with a body we cannot read: applied, result unknown

Messages say what failed, for which subaccount, and what to do. They never contain the API key
or a password: the client builds them from the operation name, username and status only.

A boundary that turns our errors into one line (the CLI's `guard`) or an answer catches
`EXPECTED`: both roots. (Registering InvalidEvent as a virtual subclass would not do: `except`
matches on the real class hierarchy and ignores `ABC.register`.)
"""

from __future__ import annotations

from handlers.errors import InvalidEvent


class SubaccountWorkerError(Exception):
    """Base of every error raised by subaccount-worker."""


class ConfigError(SubaccountWorkerError):
    """A setting is missing or invalid; the message names the environment variable."""


class BrokerUnavailable(SubaccountWorkerError):
    """Redis could not be reached; nothing was enqueued or recorded. Retry later."""


class ApiError(SubaccountWorkerError):
    """A Subaccount API call did not succeed. `operation`, `username` and `status` say which."""

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        username: str | None = None,
        status: int | None = None,
    ) -> None:
        self.operation = operation
        self.username = username
        self.status = status
        who = f" for subaccount {username!r}" if username else ""
        code = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{operation}{who} failed{code}: {message}")


class Transient(ApiError):
    """The server is overloaded, failing or unreachable; the same call may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        username: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, operation=operation, username=username, status=status)


class Permanent(ApiError):
    """The server refused the call as sent (bad parameters, auth, feature off); do not retry."""


class NotFound(Permanent):
    """The subaccount does not exist."""


class Conflict(Permanent):
    """The username is already taken."""


class Ambiguous(ApiError):
    """The request may have reached the server but no answer came: resolve by reading state."""


class MalformedResponse(Ambiguous):
    """The server answered 2xx with a body that is not what the API promises."""


# What a boundary reports as bad input or a known failure rather than a bug: every error above.
EXPECTED: tuple[type[Exception], ...] = (SubaccountWorkerError, InvalidEvent)
