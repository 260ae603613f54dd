"""Carry out plan steps through the API client, and resolve unknown outcomes by evidence.

A step whose request was sent but not answered (`Ambiguous`, or an in-progress ledger record
left by a dead attempt) is never blindly sent again. `resolve` reads the subaccount and decides:

| step | applied when | not applied when |
|---|---|---|
| create | the subaccount exists with our email | it does not exist |
| add_credits | balance = balance before + amount | balance = balance before |
| set_status | `disabled` is what we asked | it is not |
| delete | the subaccount is gone | it still exists |
| update, set_recurring | (setting the same values twice is harmless: sent again) | |

Anything else is undecidable: the event is dead-lettered `ambiguous_outcome` with both readings.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from pydantic import SecretStr

from handlers.plan import AddCredits, Create, Delete, SetRecurringCredits, SetStatus, Step, Update
from worker.api.client import SubaccountClient
from worker.errors import Conflict, NotFound

_ALPHABET = string.ascii_letters + string.digits + "-_"  # 64 symbols: bytes map without bias


@dataclass(frozen=True)
class Applied:
    result: dict[str, Any]


@dataclass(frozen=True)
class NotApplied:
    readings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Undecidable:
    readings: dict[str, Any]


Resolution = Applied | NotApplied | Undecidable


def journaled(step: Step) -> TypeGuard[AddCredits]:
    """Must the ledger mark this step in progress before its call?

    Only for grants: sending one twice doubles credits, so an unanswered grant must leave a
    record (with the balance read before it) for the next attempt to judge. Every other step
    is safe to send again: a create that finds its username taken checks the email, settings
    (update, recurring, enable/disable) are idempotent, and a delete that finds nothing is done.
    Skipping the record saves a Redis call on those steps.
    """
    return isinstance(step, AddCredits)


def generate_password(length: int = 24) -> str:
    """A strong random password meeting the API policy (upper, lower, digit; ≥ 8 characters)."""
    while True:
        raw = secrets.token_bytes(length)  # one system call, not one per character
        candidate = "".join(_ALPHABET[b % len(_ALPHABET)] for b in raw)
        if (
            any(c.isupper() for c in candidate)
            and any(c.islower() for c in candidate)
            and any(c.isdigit() for c in candidate)
        ):
            return candidate


class StepRunner:
    """Runs one step at a time against the API, and reads evidence for unknown outcomes."""

    def __init__(self, client: SubaccountClient) -> None:
        self._client = client

    def evidence(self, step: Step) -> dict[str, Any]:
        """What to read before the call so an unanswered call can be judged afterwards."""
        if isinstance(step, AddCredits):
            details = self._client.get_credit_details(step.request.username)
            return {"balance_before": details.balance}
        return {}

    def run(self, step: Step) -> dict[str, Any]:
        """Send the step's call; return its result as JSON-ready data."""
        if isinstance(step, Create):
            return self._create(step)
        if isinstance(step, Update):
            return self._client.update(step.request).model_dump(mode="json")
        if isinstance(step, AddCredits):
            return self._client.change_credits(step.request).model_dump(mode="json")
        if isinstance(step, SetRecurringCredits):
            return self._client.set_recurring(step.request).model_dump(mode="json")
        if isinstance(step, SetStatus):
            return self._client.set_disabled(step.request).model_dump(mode="json")
        try:
            return self._client.delete(step.username).model_dump(mode="json")
        except NotFound:
            return {"username": step.username, "already_deleted": True}

    def _create(self, step: Create) -> dict[str, Any]:
        request = step.request
        if step.generate_password:
            # Made here, used once, never stored: the client's owner resets it by mail.
            request = request.model_copy(update={"password": SecretStr(generate_password())})
        try:
            return self._client.create(request).model_dump(mode="json")
        except Conflict:
            resolution = self.resolve(step, {})
            if isinstance(resolution, Applied):
                return resolution.result
            raise

    def resolve(self, step: Step, evidence: dict[str, Any]) -> Resolution:
        """Decide from the subaccount's current state whether an unanswered step took effect."""
        if isinstance(step, Update | SetRecurringCredits):
            return NotApplied({"why": "idempotent setting: safe to send again"})
        username = step.username if isinstance(step, Delete) else step.request.username
        try:
            details = self._client.get_credit_details(username)
        except NotFound:
            if isinstance(step, Delete):
                return Applied({"username": username, "already_deleted": True})
            return NotApplied({"exists": False})
        reading = details.model_dump(mode="json")
        if isinstance(step, Create):
            if details.email == step.request.email:
                return Applied(reading)
            return Undecidable({"after": reading, "expected_email": step.request.email})
        if isinstance(step, SetStatus):
            if details.disabled == step.request.disabled:
                return Applied(reading)
            return NotApplied({"after": reading})
        if isinstance(step, Delete):
            return NotApplied({"after": reading})
        return _judge_credits(step, evidence, details.balance, reading)


def _judge_credits(
    step: AddCredits, evidence: dict[str, Any], balance: int, reading: dict[str, Any]
) -> Resolution:
    before = evidence.get("balance_before")
    readings = {"balance_before": before, "balance_after": balance, "amount": step.request.amount}
    if before is None:
        return Undecidable(readings)
    if balance == before + step.request.amount:
        return Applied({"username": step.request.username, "balance": balance})
    if balance == before:
        return NotApplied(readings)
    return Undecidable(readings)
