"""The sandbox's own vocabulary: credit types, recurring periods and settings, the username rule.

Defined here rather than taken from the project's client (`worker.api`): a fake that shares the
client's validators cannot catch the client's bugs. Both surfaces and the admin routes use these.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum

# 3-64 characters: letters, digits, '.', '_' or '-', the first alphanumeric. The real API's rule
# is unpublished; this is the sandbox's, and it is published in the sandbox's OpenAPI.
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")


class CreditType(StrEnum):
    """How a subaccount is billed: without limit, or from a balance of credits."""

    UNLIMITED = "unlimited"
    ONE_TIME_CREDIT = "one_time_credit"


class Period(StrEnum):
    """How often a recurring allocation tops up (v5 spells monthly "monhtly" on the wire)."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


@dataclass(frozen=True)
class Recurring:
    """A subaccount's recurring credit allocation, whichever surface set it."""

    amount: int
    period: Period
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    active: bool = True
