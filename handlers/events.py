"""The event catalogue: CloudEvents 1.0 envelopes of the seven business events, validated.

`parse_event` is the one door events come through (publish, ingress, replay): it returns a typed
event or raises `InvalidEvent` whose reasons name each bad field. Nothing here does I/O. A
client's events take effect in the total order of `handlers.order`: `time`, then at equal times
onboarded < updated, plan.changed, invoice.paid < reactivated < suspended < churned, then `id`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from handlers.errors import InvalidEvent
from handlers.limits import CONTEXT_KEY, DEFAULT_LIMITS, EventLimits, GrantCredits
from handlers.requests import CreditType, Recurring, Username

# RFC 3339: date, 'T' (or space), time, optional fraction, mandatory offset.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class EventType(StrEnum):
    ONBOARDED = "client.onboarded"
    UPDATED = "client.updated"
    INVOICE_PAID = "invoice.paid"
    PLAN_CHANGED = "plan.changed"
    SUSPENDED = "client.suspended"
    REACTIVATED = "client.reactivated"
    CHURNED = "client.churned"


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OnboardedData(_Data):
    username: Username | None = None
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    credit_type: CreditType
    credits: GrantCredits | None = Field(None, gt=0)
    recurring: Recurring | None = None


class UpdatedData(_Data):
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    credit_type: CreditType | None = None

    @model_validator(mode="after")
    def _something(self) -> UpdatedData:
        if self.email is None and self.credit_type is None:
            raise ValueError("needs email or credit_type")
        return self


class InvoicePaidData(_Data):
    invoice_id: str = Field(min_length=1, max_length=200)
    credits: GrantCredits = Field(gt=0)


class PlanChangedData(_Data):
    credit_type: CreditType | None = None
    recurring: Recurring | None = None

    @model_validator(mode="after")
    def _something(self) -> PlanChangedData:
        if self.credit_type is None and self.recurring is None:
            raise ValueError("needs credit_type or recurring")
        return self


class ReasonData(_Data):
    reason: str | None = Field(None, max_length=1000)


class _Envelope(BaseModel):
    """CloudEvents 1.0 attributes shared by every event; `subject` is the client id."""

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500)
    subject: str = Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
    time: dt.datetime
    datacontenttype: Literal["application/json"] | None = None

    @field_validator("time", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value  # built in Python (JSON input is always a string)
        if isinstance(value, str) and RFC3339.match(value):
            try:
                return dt.datetime.fromisoformat(value.upper())
            except ValueError:
                pass  # e.g. month 13: the same answer as any other bad timestamp
        raise ValueError("must be an RFC 3339 timestamp, e.g. 2026-01-31T12:00:00Z")

    @property
    def client_id(self) -> str:
        return self.subject

    @cached_property
    def key(self) -> str:
        """Stable identity for dedupe: CloudEvents ids are unique per source, so hash both."""
        digest = hashlib.sha256(f"{self.source}\n{self.id}".encode()).hexdigest()
        return digest[:32]

    def to_message(self) -> dict[str, Any]:
        """The JSON-ready dict that travels on the queue: the fields the sender set, validated.

        Defaults are not written out, so a message says no more than its sender did (and a
        default added to the catalogue later does not change the messages already sent).
        """
        return self.model_dump(mode="json", exclude_none=True, exclude_unset=True)


class ClientOnboarded(_Envelope):
    type: Literal[EventType.ONBOARDED]
    data: OnboardedData


class ClientUpdated(_Envelope):
    type: Literal[EventType.UPDATED]
    data: UpdatedData


class InvoicePaid(_Envelope):
    type: Literal[EventType.INVOICE_PAID]
    data: InvoicePaidData


class PlanChanged(_Envelope):
    type: Literal[EventType.PLAN_CHANGED]
    data: PlanChangedData


class ClientSuspended(_Envelope):
    type: Literal[EventType.SUSPENDED]
    data: ReasonData = ReasonData()


class ClientReactivated(_Envelope):
    type: Literal[EventType.REACTIVATED]
    data: ReasonData = ReasonData()


class ClientChurned(_Envelope):
    type: Literal[EventType.CHURNED]
    data: ReasonData = ReasonData()


Event = Annotated[
    ClientOnboarded
    | ClientUpdated
    | InvoicePaid
    | PlanChanged
    | ClientSuspended
    | ClientReactivated
    | ClientChurned,
    Field(discriminator="type"),
]
_EVENT: TypeAdapter[Event] = TypeAdapter(Event)
_TYPES = frozenset(t.value for t in EventType)
EVENT_CLASSES: tuple[type[Event], ...] = get_args(get_args(Event)[0])  # the union's members
MAX_EVENT_BYTES = 64 * 1024


def parse_event(raw: object, limits: EventLimits = DEFAULT_LIMITS) -> Event:
    """Validate one event; raise InvalidEvent naming every bad field (nothing half-accepted).

    `raw` is JSON text or a JSON-ready dict. Types are strict, as JSON has them: an integer is a
    JSON integer (not `"100"`, `100.0`, `1e2` or `true`), a date an ISO date string, a boolean
    `true` or `false`. `limits` caps what one event may ask for (credits per grant).
    """
    text = raw if isinstance(raw, str | bytes) else None
    if text is not None:
        if len(text) > MAX_EVENT_BYTES:
            raise InvalidEvent([f"event: larger than {MAX_EVENT_BYTES} bytes"])
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSON, encoding, depth, huge integers
            raise InvalidEvent([f"event: not valid JSON ({type(exc).__name__})"]) from None
    if not isinstance(raw, dict):
        raise InvalidEvent(["event: must be a JSON object"])
    if not isinstance(raw.get("type"), str) or raw["type"] not in _TYPES:
        known = ", ".join(t.value for t in EventType)
        raise InvalidEvent([f"type: unknown event type {raw.get('type')!r} (known: {known})"])
    if text is None:
        try:
            text = json.dumps(raw, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidEvent([f"event: not JSON-ready ({type(exc).__name__})"]) from None
    try:
        return _EVENT.validate_json(text, strict=True, context={CONTEXT_KEY: limits})
    except ValidationError as exc:
        raise InvalidEvent(_reasons(exc)) from None


# Plainer words than pydantic's for the strict-type refusals, by pydantic error type.
_STRICT_MESSAGES = {
    "int_type": "must be a JSON integer (not a string, a decimal or a boolean)",
    "int_from_float": "must be a JSON integer (not a string, a decimal or a boolean)",
    "bool_type": "must be true or false",
    "string_type": "must be a JSON string",
    "date_type": "must be an ISO date string, e.g. 2026-01-31",
    "date_parsing": "must be an ISO date string, e.g. 2026-01-31",
    "date_from_datetime_parsing": "must be an ISO date string, e.g. 2026-01-31",
    "date_from_datetime_inexact": "must be an ISO date string, e.g. 2026-01-31",
}


def _reasons(exc: ValidationError) -> list[str]:
    """One 'field.path: message' line per error, without the union tag pydantic prepends."""
    return [_reason(err) for err in exc.errors(include_input=False, include_url=False)]


def _reason(err: ErrorDetails) -> str:
    loc = [str(part) for part in err["loc"]]
    if loc and loc[0] in _TYPES:
        loc = loc[1:]
    message = _STRICT_MESSAGES.get(err["type"]) or err["msg"].removeprefix("Value error, ")
    return f"{'.'.join(loc) or 'event'}: {message}"
