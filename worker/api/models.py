"""Typed results of the Subaccount operations and the page of a list, whatever the surface.

The requests a plan holds live in `handlers.requests` (the decisions speak them); the surface
modules (`v5`, `v6`) turn those into wire bodies and the answers into these types.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from handlers.requests import CreditType, Recurring


class ListPage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

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
