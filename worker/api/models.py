"""Typed requests and results of the eight Subaccount operations, independent of the surface.

The surface modules (`v5`, `v6`) turn these into wire bodies and back; the rest of the project
only ever sees these types.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")


class CreditType(StrEnum):
    UNLIMITED = "unlimited"
    ONE_TIME_CREDIT = "one_time_credit"


class Period(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Username(_Model):
    username: str

    @field_validator("username")
    @classmethod
    def _valid_username(cls, value: str) -> str:
        if not USERNAME_RE.match(value):
            raise ValueError(
                "3-64 characters: letters, digits, '.', '_' or '-', first alphanumeric"
            )
        return value


class CreateSubaccount(Username):
    """Create a subaccount. Without a password (v5 only) the confirmation mail sets it."""

    email: str
    credit_type: CreditType = CreditType.UNLIMITED
    password: SecretStr | None = None


class UpdateSubaccount(Username):
    email: str | None = None
    credit_type: CreditType | None = None
    password: SecretStr | None = None


class ChangeCredits(Username):
    action: Literal["increase", "decrease"] = "increase"
    amount: int = Field(gt=0)


class Recurring(_Model):
    """Recurring credit allocation of a subaccount."""

    amount: int = Field(ge=0)
    period: Period
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    active: bool = True


class SetRecurring(Username):
    recurring: Recurring


class SetDisabled(Username):
    disabled: bool


class ListPage(_Model):
    limit: int = Field(20, ge=1, le=1000)
    offset: int = Field(0, ge=0)


# --- results --------------------------------------------------------------------------------


class Subaccount(BaseModel):
    """A subaccount as the API describes it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    username: str
    email: str
    credit_type: CreditType
    disabled: bool = False


class CreditDetails(Subaccount):
    """Balance and recurring settings of one subaccount (plus its status, for state reads).

    `used`: credits consumed by sending so far, when the surface reports it (the sandbox does,
    on both surfaces; docs/api.md); `balance + used` then moves only with grants and deductions.
    """

    balance: int
    used: int | None = None
    recurring: Recurring | None = None


class CreditBalance(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    username: str
    balance: int


class Deleted(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    username: str
    returned_credits: int = 0


class SubaccountList(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    subaccounts: list[Subaccount]
    total: int
    limit: int
    offset: int
