"""The story's end: every subaccount read back from the API, the grants counted, the dead letters.

The proof is external: balances come from the Subaccount API, grants from the sandbox journal (every
state-changing call as answered), and both are compared with what the story expected.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from worker import keys
from worker.api.client import SubaccountClient
from worker.api.models import ListPage
from worker.dev.demo.scene import Chapter, Scene


@dataclass(frozen=True)
class AccountLine:
    """One client's subaccount as the API describes it, beside what the story expected."""

    client_id: str
    username: str
    exists: bool
    disabled: bool | None
    credit_type: str
    balance: int | None
    used: int
    granted: list[int]  # applied add_credits amounts in the journal
    expected: list[int]


@dataclass
class Summary:
    """What the final tables show, and the checks on it."""

    accounts: list[AccountLine] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    chapter: Chapter = field(default_factory=lambda: Chapter("The end", ""))


def summarize(scene: Scene) -> Summary:
    """Read the final state and check it against the story's expectations."""
    summary = Summary()
    listed = _listed(scene)
    used = {name: acc.get("used", 0) for name, acc in scene.admin.state()["subaccounts"].items()}
    grants: dict[str, list[int]] = {}
    for entry in scene.admin.journal(operation="add_credits"):
        if entry["applied"]:
            grants.setdefault(entry["username"], []).append(int(entry["amount"]))
    with SubaccountClient.from_settings(scene.settings) as api:
        for client in scene.cast.values():
            exists = client.username in listed
            details = api.get_credit_details(client.username) if exists else None
            summary.accounts.append(
                AccountLine(
                    client_id=client.client_id,
                    username=client.username,
                    exists=exists,
                    disabled=details.disabled if details else None,
                    credit_type=str(details.credit_type) if details else "-",
                    balance=details.balance if details else None,
                    used=int(used.get(client.username, 0)),
                    granted=grants.get(client.username, []),
                    expected=[amount for _what, amount in scene.grants.get(client.client_id, [])],
                )
            )
    summary.dead_letters = _dead_letters(scene)
    _check(scene, summary)
    return summary


def _listed(scene: Scene) -> set[str]:
    """Usernames the API lists (one page is plenty for the story)."""
    with SubaccountClient.from_settings(scene.settings) as api:
        page = api.list_subaccounts(ListPage(limit=100))
    return {sub.username for sub in page.subaccounts}


def _dead_letters(scene: Scene) -> list[dict[str, Any]]:
    raw: Any = scene.redis.hvals(keys.dead_letters(scene.prefix))
    return [json.loads(value) for value in raw or []]


def _check(scene: Scene, summary: Summary) -> None:
    ch = summary.chapter
    for line in summary.accounts:
        name = line.client_id
        ch.check(
            f"{name}: each grant happened once",
            Counter(line.granted) == Counter(line.expected),
            f"granted {line.granted}, expected {line.expected}",
        )
        if line.client_id in scene.churned:
            ch.check(f"{name}: deleted at the API", not line.exists)
            continue
        ch.check(f"{name}: exists and enabled", line.exists and line.disabled is False)
        total = (line.balance or 0) + line.used
        ch.check(
            f"{name}: balance + used = credits granted",
            total == sum(line.expected),
            f"{line.balance} + {line.used} = {total}, granted {sum(line.expected)}",
        )
    waiting = sorted(
        str(d["event"].get("data", {}).get("invoice_id")) for d in summary.dead_letters
    )
    ch.check(
        "dead letters are the ones expected",
        waiting == sorted(scene.pending),
        f"{waiting or 'none'}, expected {sorted(scene.pending) or 'none'}",
    )
