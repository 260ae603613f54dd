"""Validated request fields shared by both surfaces, and the one step that parses wire arguments.

Any validation failure becomes the API's 400 "Invalid Parameters" with a detail of the form
`<field>: <why>`, whichever surface received the request.
"""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from worker.sandbox.failures import invalid
from worker.sandbox.model import USERNAME_RE

MAX_AMOUNT = 1_000_000_000
STRENGTH_RULE = "at least 8 characters with an upper-case letter, a lower-case letter and a digit"
V6_STRENGTH_RULE = "at least 8 characters with a letter and a digit"
USERNAME_RULE = "3-64 characters: letters, digits, '.', '_' or '-', first alphanumeric"
EMAIL_RULE = "must be a local part, a single '@' and a domain containing a dot"
EMAIL_MAX = 254
# One '@'; the domain has a dot, neither starts nor ends with one, and has no "..". The same
# pattern is published in the OpenAPI schema (ECMA-262 compatible), so clients see the rule.
EMAIL_RE = re.compile(r"^[^@\s]+@(?=[^@\s]*\.)(?![^@\s]*\.\.)[^@\s.][^@\s]*[^@\s.]$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FLAGS = {"1": True, "0": False, "active": True, "inactive": False}
FLAG_RULE = 'must be "active"/"inactive", "1"/"0" or true/false'


def _username(value: str) -> str:
    if not USERNAME_RE.match(value):
        raise ValueError(USERNAME_RULE)
    return value


def _email(value: str) -> str:
    if len(value) > EMAIL_MAX or not EMAIL_RE.match(value):
        raise ValueError(EMAIL_RULE)
    return value


def check_password(value: str) -> str:
    """Apply the v5 SDK's password policy (upper case, lower case and a digit)."""
    ok = (
        len(value) >= 8
        and any(char in string.ascii_uppercase for char in value)
        and any(char in string.ascii_lowercase for char in value)
        and any(char in string.digits for char in value)
    )
    if not ok:
        raise ValueError(STRENGTH_RULE)
    return value


def check_v6_password(value: str) -> str:
    """Apply the v6 policy: the reference says only "minimum security policies", and its own
    example (`securepassword123`) has no upper case, so a letter and a digit are enough."""
    ok = (
        len(value) >= 8
        and any(char in string.ascii_letters for char in value)
        and any(char in string.digits for char in value)
    )
    if not ok:
        raise ValueError(V6_STRENGTH_RULE)
    return value


def _recurring_flag(value: object) -> object:
    """The recurring `status` as a bool, from any form a client of the v5 SDK would send."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _FLAGS:
        return _FLAGS[value]
    raise ValueError(FLAG_RULE)


def _iso_date_string(value: object) -> object:
    if value is not None and not (isinstance(value, str) and _ISO_DATE.match(value)):
        raise ValueError("must be an ISO date YYYY-MM-DD or null")
    return value


USERNAME_SCHEMA: dict[str, Any] = {"pattern": USERNAME_RE.pattern, "description": USERNAME_RULE}
Username = Annotated[StrictStr, AfterValidator(_username), Field(json_schema_extra=USERNAME_SCHEMA)]
Email = Annotated[
    StrictStr,
    AfterValidator(_email),
    Field(json_schema_extra={"pattern": EMAIL_RE.pattern, "maxLength": EMAIL_MAX}),
]
Password = Annotated[StrictStr, AfterValidator(check_password), Field(description=STRENGTH_RULE)]
V6Password = Annotated[
    StrictStr, AfterValidator(check_v6_password), Field(description=V6_STRENGTH_RULE)
]
CreditTypeName = Literal["unlimited", "one_time_credit"]
Action = Literal["increase", "decrease"]
Amount = Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT)]
RecurringAmount = Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT)]
IsoDate = Annotated[dt.date, BeforeValidator(_iso_date_string)]
RecurringStatus = Literal["active", "inactive"]
RecurringFlag = Annotated[
    bool,
    BeforeValidator(_recurring_flag),
    WithJsonSchema(
        {
            "anyOf": [{"type": "boolean"}, {"enum": ["active", "inactive", "1", "0"]}],
            "description": "on or off; answers always say active or inactive",
        }
    ),
]
Disabled = StrictBool


class WireModel(BaseModel):
    """A request body or query: unknown fields are refused so client wire mistakes show up."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DatedModel(WireModel):
    """A recurring-credit request: optional start and end dates, the end not before the start."""

    start_date: IsoDate | None = None
    end_date: IsoDate | None = None

    @model_validator(mode="after")
    def _end_not_before_start(self) -> Self:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date: must not be before start_date")
        return self


class UsernameArg(WireModel):
    """A username given in a path or query rather than a body."""

    username: Username


class ListQuery(BaseModel):
    """Paging of the list operation; `offset` is the number of subaccounts skipped."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    limit: int = Field(20, ge=1, le=1000)
    offset: int = Field(0, ge=0)


@dataclass(frozen=True)
class WireArgs:
    """A request's arguments as sent, or the reason they could not be read as a JSON object."""

    values: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], args: WireArgs | Mapping[str, Any]) -> M:
    """Validate `args` into `model`, or raise the 400 naming the failing fields."""
    if isinstance(args, WireArgs):
        if args.problem is not None:
            raise invalid(args.problem)
        args = args.values
    try:
        return model.model_validate(dict(args))
    except ValidationError as exc:
        raise invalid(describe(exc.errors())) from None


def describe(errors: Iterable[Mapping[str, Any]], skip_first: bool = False) -> str:
    """Render pydantic errors as `field: why; ...` (never echoing the rejected values)."""
    parts = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if skip_first and loc:
            loc = loc[1:]
        why = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc)}: {why}" if loc else why)
    return "; ".join(parts) or "invalid request"
