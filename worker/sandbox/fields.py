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
    model_validator,
)

from handlers.requests import USERNAME_RE
from worker.sandbox.failures import invalid

MAX_AMOUNT = 1_000_000_000
STRENGTH_RULE = "at least 8 characters with an upper-case letter, a lower-case letter and a digit"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _username(value: str) -> str:
    if not USERNAME_RE.match(value):
        raise ValueError("3-64 characters: letters, digits, '.', '_' or '-', first alphanumeric")
    return value


def _email(value: str) -> str:
    local, _, domain = value.partition("@")
    ok = (
        value.count("@") == 1
        and bool(local)
        and "." in domain
        and not domain.startswith(".")
        and not domain.endswith(".")
        and ".." not in domain
        and not any(char.isspace() for char in value)
        and len(value) <= 254
    )
    if not ok:
        raise ValueError("must be a local part, a single '@' and a domain containing a dot")
    return value


def check_password(value: str) -> str:
    """Apply the password policy (seed 002: "Passwords must meet minimum security policies")."""
    ok = (
        len(value) >= 8
        and any(char in string.ascii_uppercase for char in value)
        and any(char in string.ascii_lowercase for char in value)
        and any(char in string.digits for char in value)
    )
    if not ok:
        raise ValueError(STRENGTH_RULE)
    return value


def _iso_date_string(value: object) -> object:
    if value is not None and not (isinstance(value, str) and _ISO_DATE.match(value)):
        raise ValueError("must be an ISO date YYYY-MM-DD or null")
    return value


Username = Annotated[StrictStr, AfterValidator(_username)]
Email = Annotated[StrictStr, AfterValidator(_email)]
Password = Annotated[StrictStr, AfterValidator(check_password), Field(description=STRENGTH_RULE)]
CreditTypeName = Literal["unlimited", "one_time_credit"]
Action = Literal["increase", "decrease"]
Amount = Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT)]
RecurringAmount = Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT)]
IsoDate = Annotated[dt.date, BeforeValidator(_iso_date_string)]
RecurringStatus = Literal["active", "inactive"]
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
