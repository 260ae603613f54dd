"""The requests a plan holds: typed Subaccount operations, independent of the API surface.

Handlers decide in these terms; `worker/api` turns them into HTTP for the configured surface
(v5 or v6). They are plain immutable values: building one does no I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from handlers.limits import GrantCredits

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")
USERNAME_RULE = "3-64 characters: letters, digits, '.', '_' or '-', first alphanumeric"


def valid_username(value: str) -> str:
    """`value` if it is a valid subaccount username, else ValueError stating the rule."""
    if not USERNAME_RE.match(value):
        raise ValueError(USERNAME_RULE)
    return value


Username = Annotated[str, AfterValidator(valid_username)]


class CreditType(StrEnum):
    UNLIMITED = "unlimited"
    ONE_TIME_CREDIT = "one_time_credit"


class Period(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Recurring(_Request):
    """Recurring credits: `amount` every `period`, optionally between two dates."""

    amount: GrantCredits = Field(ge=0)
    period: Period
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    active: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> Recurring:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self


class CreateSubaccount(_Request):
    """Create a subaccount. Without a password (v5 only) the confirmation mail sets it."""

    username: Username
    email: str
    credit_type: CreditType = CreditType.UNLIMITED
    password: SecretStr | None = None


class UpdateSubaccount(_Request):
    username: Username
    email: str | None = None
    credit_type: CreditType | None = None
    password: SecretStr | None = None


class ChangeCredits(_Request):
    username: Username
    action: Literal["increase", "decrease"] = "increase"
    amount: int = Field(gt=0)


class SetRecurring(_Request):
    username: Username
    recurring: Recurring


class SetDisabled(_Request):
    username: Username
    disabled: bool
