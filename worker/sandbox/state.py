"""The sandbox's in-memory model of a master account and its subaccounts, with the API's rules.

One `SandboxState` is shared by both surfaces and by the admin routes; every method takes the
lock, and callers may hold `lock` (re-entrant) to group an operation with its journal entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from worker.sandbox.failures import ALREADY_EXISTS, FORBIDDEN, ApiFailure, invalid, not_found
from worker.sandbox.model import CreditType, Recurring


@dataclass
class Account:
    """One subaccount. The password is kept only as a SHA-256 digest and is never rendered.

    `used` counts the credits its sending consumed (defined by the sandbox, see `sending`).
    """

    username: str
    email: str
    credit_type: CreditType
    disabled: bool = False
    balance: int = 0
    used: int = 0
    recurring: Recurring | None = None
    password_sha256: str | None = None
    created_seq: int = 0


def _digest(password: str | None) -> str | None:
    return hashlib.sha256(password.encode()).hexdigest() if password is not None else None


class SandboxState:
    """Master account (active flag, credit balance) and subaccounts in creation order."""

    def __init__(self, master_balance: int) -> None:
        self.lock = threading.RLock()
        self._start_balance = master_balance
        self.accounts: dict[str, Account] = {}
        self.master_active = True
        self.master_balance = master_balance
        self._created = 0

    def reset(self) -> None:
        """Back to the start: no subaccounts, master active with its start balance."""
        with self.lock:
            self.accounts = {}
            self.master_active = True
            self.master_balance = self._start_balance
            self._created = 0

    def require_active_master(self) -> None:
        """Refuse every call while the master account is inactive (v6 reference: 403)."""
        if not self.master_active:
            raise ApiFailure(403, FORBIDDEN, "master account is inactive")

    def _get(self, username: str) -> Account:
        account = self.accounts.get(username)
        if account is None:
            raise not_found(username)
        return account

    def view(self, username: str) -> Account:
        """A copy of one subaccount, or the 404."""
        with self.lock:
            return dataclasses.replace(self._get(username))

    def create(
        self, username: str, email: str, credit_type: CreditType, password: str | None
    ) -> Account:
        """Add a subaccount with zero balance; a taken username is a 409 (sandbox-defined)."""
        with self.lock:
            if username in self.accounts:
                raise ApiFailure(409, ALREADY_EXISTS, f"username: {username!r} is taken")
            self._created += 1
            account = Account(
                username, email, credit_type, password_sha256=_digest(password),
                created_seq=self._created,
            )  # fmt: skip
            self.accounts[username] = account
            return dataclasses.replace(account)

    def update(
        self,
        username: str,
        email: str | None = None,
        credit_type: CreditType | None = None,
        password: str | None = None,
    ) -> Account:
        """Change email, credit type and/or password; giving none of them is a 400."""
        if email is None and credit_type is None and password is None:
            raise invalid("body: nothing to update (give an email, credit type or password)")
        with self.lock:
            account = self._get(username)
            account.email = email if email is not None else account.email
            account.credit_type = credit_type if credit_type is not None else account.credit_type
            account.password_sha256 = _digest(password) or account.password_sha256
            return dataclasses.replace(account)

    def change_credits(
        self, username: str, action: Literal["increase", "decrease"], amount: int
    ) -> int:
        """Move credits master → subaccount (increase) or back (decrease); the new balance."""
        with self.lock:
            account = self._get(username)
            if action == "increase":
                if self.master_balance < amount:
                    raise invalid("amount: insufficient master balance")
                self.master_balance -= amount
                account.balance += amount
            else:
                if account.balance < amount:
                    raise invalid("amount: insufficient balance")
                account.balance -= amount
                self.master_balance += amount
            return account.balance

    def senders(self) -> list[str]:
        """Usernames of the subaccounts that send mail from credits: enabled, `one_time_credit`."""
        with self.lock:
            return [
                a.username
                for a in self.accounts.values()
                if not a.disabled and a.credit_type is CreditType.ONE_TIME_CREDIT
            ]

    def consume(self, username: str, emails: int) -> int:
        """Send up to `emails` from the balance (balance falls, used rises); how many were sent."""
        with self.lock:
            account = self._get(username)
            sent = min(emails, account.balance)
            account.balance -= sent
            account.used += sent
            return sent

    def set_recurring(self, username: str, recurring: Recurring) -> Recurring:
        """Store the recurring allocation (the sandbox stores it; it never tops up by itself)."""
        with self.lock:
            self._get(username).recurring = recurring
            return recurring

    def set_disabled(self, username: str, disabled: bool) -> Account:
        """Disable or enable; a disabled subaccount keeps its credits and can still receive more."""
        with self.lock:
            account = self._get(username)
            account.disabled = disabled
            return dataclasses.replace(account)

    def delete(self, username: str) -> int:
        """Remove the subaccount, returning its balance to the master; the credits returned."""
        with self.lock:
            account = self.accounts.pop(username, None)
            if account is None:
                raise not_found(username)
            self.master_balance += account.balance
            return account.balance

    def page(self, limit: int, offset: int) -> tuple[list[Account], int]:
        """Subaccounts in creation order after skipping `offset`, at most `limit`; and the total."""
        with self.lock:
            accounts = list(self.accounts.values())
            return [dataclasses.replace(a) for a in accounts[offset : offset + limit]], len(
                accounts
            )

    def snapshot(self) -> tuple[bool, int, list[Account]]:
        """Master flag, master balance and copies of all subaccounts, read atomically."""
        with self.lock:
            accounts = [dataclasses.replace(a) for a in self.accounts.values()]
            return self.master_active, self.master_balance, accounts

    def upsert(self, patches: Mapping[str, Mapping[str, Any] | None]) -> None:
        """Set subaccounts' fields directly (admin only), all or nothing; new ones need an email.

        A `None` patch deletes the subaccount as the API would (its credits return to the master).
        """
        with self.lock:
            for username, fields in patches.items():
                known = username in self.accounts
                if fields is None and not known:
                    raise invalid(f"subaccounts.{username}: no subaccount to delete")
                if fields is not None and not known and "email" not in fields:
                    raise invalid(f"subaccounts.{username}.email: required for a new subaccount")
            for username, fields in patches.items():
                if fields is None:
                    self.delete(username)
                    continue
                account = self.accounts.get(username)
                if account is None:
                    self._created += 1
                    account = Account(username, "", CreditType.UNLIMITED, created_seq=self._created)
                    self.accounts[username] = account
                for name, value in fields.items():
                    setattr(account, name, value)

    def set_master(self, active: bool | None, balance: int | None) -> None:
        """Set the master account's active flag and/or balance directly (admin only)."""
        with self.lock:
            self.master_active = self.master_active if active is None else active
            self.master_balance = self.master_balance if balance is None else balance
