"""Carry out plan steps through the API client, and resolve unknown outcomes by evidence.

A step whose request was sent but not answered (`Ambiguous`, or an in-progress ledger record
left by a dead attempt) is never blindly sent again. `resolve` reads the subaccount and decides:

| step | applied when | not applied when |
|---|---|---|
| create | the subaccount exists with our email | it does not exist |
| add_credits | allocated moved by amount + ours | allocated moved by ours |
| set_status | `disabled` is what we asked | it is not |
| delete | the subaccount is gone | it still exists |
| update | the email and credit type read are what we asked | they are not (or only a password) |
| set_recurring | the recurring settings read are what we asked | they are not |

(A password cannot be read: an update of it alone is sent again, harmless once decided.)
An unanswered call is judged only after its in-doubt window (`worker.pipeline.in_doubt`): read
earlier, a late effect would look "not applied" and the call would be sent again.

Anything else is undecidable: the event is dead-lettered `ambiguous_outcome` with both readings.

A grant is judged by a reading that only grants change: **allocated = balance + used**, read just
before the call and again now, when the surface reports `used` (credits consumed by sending);
sending moves credits from balance to used and leaves allocated alone. When it does not, the
balance alone is compared, and the readings say so (`evidence`): a subaccount that sent mail
between the readings then makes the grant undecidable, never guessed. **ours** is the sum of
this system's other grants of the client that began after the judged one and are done (from
the client's grants record, `keys.grants`, ordered by the Redis server's clock): they moved
allocated too. One of them still undecided makes the readings undecidable.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from typing import Any, TypeGuard, assert_never

from pydantic import SecretStr

from handlers.plan import AddCredits, Create, Delete, SetRecurringCredits, SetStatus, Step, Update
from worker.api.client import SubaccountClient
from worker.api.models import CreditDetails
from worker.errors import Conflict, NotFound

_ALPHABET = string.ascii_letters + string.digits + "-_"  # 64 symbols: bytes map without bias


ALLOCATED = "balance + used"
BALANCE_ONLY = "balance only: the surface reports no usage (sending would move it)"


@dataclass(frozen=True)
class OurGrants:
    """This system's other grants of a client started after the one being judged: credits of
    those done, and how many are still undecided (in progress)."""

    applied: int = 0
    undecided: int = 0
    known: bool = True  # False: the judged grant is no longer in the client's grants record


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
        match step:
            case AddCredits():
                details = self._client.get_credit_details(step.request.username)
                # `disabled` too: a grant to one we believe enabled is drift
                return {
                    "balance_before": details.balance,
                    "used_before": details.used,
                    "disabled": details.disabled,
                }
            case Create() | Update() | SetRecurringCredits() | SetStatus() | Delete():
                return {}  # judged by the state they set, or safe to send again
            case _:
                assert_never(step)

    def pace(self) -> float:
        """Reserve the rate-limit slot of the next call; how long to wait for it (s)."""
        return self._client.pace()

    def unpace(self) -> None:
        """Drop a reserved slot no call used."""
        self._client.unpace()

    def run(self, step: Step) -> dict[str, Any]:
        """Send the step's call; return its result as JSON-ready data."""
        match step:
            case Create():
                return self._create(step)
            case Update():
                return self._client.update(step.request).model_dump(mode="json")
            case AddCredits():
                return self._client.change_credits(step.request).model_dump(mode="json")
            case SetRecurringCredits():
                return self._client.set_recurring(step.request).model_dump(mode="json")
            case SetStatus():
                return self._client.set_disabled(step.request).model_dump(mode="json")
            case Delete():
                return self._delete(step)
            case _:
                assert_never(step)

    def _delete(self, step: Delete) -> dict[str, Any]:
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

    def resolve(
        self, step: Step, evidence: dict[str, Any], ours: OurGrants | None = None
    ) -> Resolution:
        """Decide from the subaccount's current state whether an unanswered step took effect
        (`ours`: for a grant, our other grants of the client since it started)."""
        match step:
            case Update():
                return _judge_update(step, self._details(step.request.username))
            case SetRecurringCredits():
                return _judge_recurring(step, self._details(step.request.username))
            case Delete():
                details = self._details(step.username)
                if details is None:
                    return Applied({"username": step.username, "already_deleted": True})
                return NotApplied({"after": details.model_dump(mode="json")})
            case Create():
                return _judge_create(step, self._details(step.request.username))
            case SetStatus():
                return _judge_status(step, self._details(step.request.username))
            case AddCredits():
                details = self._details(step.request.username)
                if details is None:
                    return NotApplied({"exists": False})
                return judge_grant(step, evidence, details, ours or OurGrants())
            case _:
                assert_never(step)

    def _details(self, username: str) -> CreditDetails | None:
        """The subaccount's credit details, or None if it does not exist."""
        try:
            return self._client.get_credit_details(username)
        except NotFound:
            return None


def _judge_create(step: Create, details: CreditDetails | None) -> Resolution:
    if details is None:
        return NotApplied({"exists": False})
    reading = details.model_dump(mode="json")
    if details.email == step.request.email:
        return Applied(reading)
    return Undecidable({"after": reading, "expected_email": step.request.email})


def _judge_status(step: SetStatus, details: CreditDetails | None) -> Resolution:
    if details is None:
        return NotApplied({"exists": False})
    reading = details.model_dump(mode="json")
    if details.disabled == step.request.disabled:
        return Applied(reading)
    return NotApplied({"after": reading})


def _judge_update(step: Update, details: CreditDetails | None) -> Resolution:
    if details is None:
        return NotApplied({"exists": False})
    request, reading = step.request, details.model_dump(mode="json")
    asked = {k: v for k, v in (("email", request.email), ("credit_type", request.credit_type))
             if v is not None}  # fmt: skip
    if asked and all(getattr(details, k) == v for k, v in asked.items()):
        return Applied(reading)
    return NotApplied({"after": reading})


def _judge_recurring(step: SetRecurringCredits, details: CreditDetails | None) -> Resolution:
    if details is None:
        return NotApplied({"exists": False})
    reading = details.model_dump(mode="json")
    if details.recurring == step.request.recurring:
        return Applied(reading)
    return NotApplied({"after": reading})


def judge_grant(
    step: AddCredits, evidence: dict[str, Any], details: CreditDetails, ours: OurGrants
) -> Resolution:
    """The resolution table's grant row: allocated (or the balance alone) net of our grants."""
    amount = step.request.amount
    balance_before, used_before = evidence.get("balance_before"), evidence.get("used_before")
    readings: dict[str, Any] = {
        "balance_before": balance_before,
        "balance_after": details.balance,
        "amount": amount,
    }
    if used_before is not None and details.used is not None:
        readings.update(used_before=used_before, used_after=details.used, evidence=ALLOCATED)
        before, after = (balance_before or 0) + used_before, details.balance + details.used
    else:
        readings["evidence"] = BALANCE_ONLY
        before, after = balance_before or 0, details.balance
    if ours.applied or ours.undecided:
        readings.update(our_grants_between=ours.applied, our_grants_undecided=ours.undecided)
    if not ours.known:
        readings["our_grants_between"] = "unknown: the grant fell off the client's record"
    if balance_before is None or ours.undecided or not ours.known:
        return Undecidable(readings)
    moved = after - before - ours.applied
    recurring = details.recurring
    if moved == amount and recurring and recurring.active and recurring.amount == amount:
        # the API tops the subaccount up by this very amount on its own: our grant and that
        # top-up cannot be told apart, so neither is guessed (README "Out-of-band changes")
        readings["recurring_amount"] = recurring.amount
        return Undecidable(readings)
    if moved == amount:
        return Applied({"username": step.request.username, "balance": details.balance})
    if moved == 0:
        return NotApplied(readings)
    return Undecidable(readings)
