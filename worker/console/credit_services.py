"""The console's door to the credits services (`worker.credits`): snapshots sorted by runway,
low/recovered alerts, open drift, and reconcile with its fix kept between preview and confirm.

Reconcile reads the API, so it needs `SUBACCOUNT_WORKER_API_BASE_URL` and `…_API_KEY` in the
console's environment; without them the credits page still shows the monitor's snapshots,
alerts and drift.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict
from typing import Any

import redis

from handlers import Context
from worker import keys
from worker.console.views import Chart, line_chart, when
from worker.credits import reconcile
from worker.credits.drift import Drift, DriftKind, Fix
from worker.credits.monitor import monitor_client
from worker.credits.notify import NotificationType, read_notifications
from worker.credits.service import CreditRow, list_credits, show_credits
from worker.credits.store import CreditsStore
from worker.ops.filters import InvalidInput
from worker.pipeline.publish import Publisher
from worker.settings import ApiSurface, Settings

ALERT_KINDS = {NotificationType.CREDITS_LOW, NotificationType.CREDITS_RECOVERED}
ALERTS_SHOWN = 50
ROWS_PER_PAGE = 50
FIX_TTL_S = 30 * 60


class CreditServices:
    """Credits calls of one console process."""

    def __init__(self, client: redis.Redis, settings: Settings, publisher: Publisher) -> None:
        self.redis = client
        self.settings = settings
        self.prefix = settings.key_prefix
        self.publisher = publisher

    def rows(self) -> list[CreditRow]:
        """`credits list`: every subaccount's latest snapshot, shortest runway first."""
        return list_credits(self.redis, self.prefix)

    def page(self, number: int = 1) -> dict[str, Any]:
        """The Credits page: drifting and low subaccounts first (critical, then warning), then
        the rest by runway, `ROWS_PER_PAGE` a page."""
        notes = read_notifications(self.redis, self.prefix, count=ALERTS_SHOWN * 2)
        alerts = [n for n in reversed(notes) if n.type in ALERT_KINDS][:ALERTS_SHOWN]
        drift = self.open_drift()
        drifting = {str(d.get("username")) for d in drift}
        rank = {"critical": 0, "warning": 1}
        rows = sorted(
            self.rows(),
            key=lambda r: (r.username not in drifting, rank.get(r.level, 2) if r.low else 2),
        )  # stable: by runway within each group
        pages = max(1, -(-len(rows) // ROWS_PER_PAGE))
        number = min(max(1, number), pages)
        start = (number - 1) * ROWS_PER_PAGE
        return {
            "rows": rows[start : start + ROWS_PER_PAGE],
            "drifting": drifting,
            "page": number,
            "pages": pages,
            "total": len(rows),
            "low_total": sum(1 for r in rows if r.low),
            "alerts": [_alert(n.type.value, n.at, n.data) for n in alerts],
            "drift": drift,
            "reconcile_ready": self._api_ready(),
        }

    def _api_ready(self) -> bool:
        return bool(self.settings.api_base_url and self.settings.api_key.get_secret_value())

    def open_drift(self) -> list[dict[str, Any]]:
        """The drift the monitor's last scans found and has not seen go away; a missing
        subaccount's with the last balance it was seen with (its history's newest)."""
        store = CreditsStore(self.redis, self.prefix)
        drift = list(store.open_drift().values())
        missing = [str(d.get("username")) for d in drift if d.get("kind") == "missing"]
        last = {name: h[0].balance for name, h in store.histories(missing).items() if h}
        return [{**d, "last_balance": last.get(str(d.get("username")))} for d in drift]

    def counts(self) -> tuple[int, int]:
        """(subaccounts with an open low-credit alert, open drift items) for the overview."""
        return sum(1 for row in self.rows() if row.low), len(self.open_drift())

    def client(self, client_id: str) -> dict[str, Any]:
        """`credits show` of one client, its balance history as a chart, and its drift."""
        detail = show_credits(self.redis, self.prefix, client_id)
        drift = [d for d in self.open_drift() if d.get("client_id") == client_id]
        if detail is None:
            return {"credits": None, "credit_chart": None, "drift": drift}
        oldest_first = list(reversed(detail.history))
        chart: Chart = line_chart(
            [snap.balance for snap in oldest_first],
            width=560,
            first_label=when(oldest_first[0].read_at * 1000) if oldest_first else "",
            last_label=when(oldest_first[-1].read_at * 1000) if oldest_first else "",
        )
        return {"credits": detail.row, "credit_chart": chart, "drift": drift}

    def reconcile(self, *, recreate: bool = False) -> dict[str, Any]:
        """The reconcile report (reads the API) and its fix plan, kept for a confirm; with
        `recreate`, missing subaccounts are re-created with their last known credits."""
        self.settings.require_api()  # ConfigError says which setting is missing
        with monitor_client(self.settings, self.redis) as api:
            found = reconcile.find(
                api,
                self.redis,
                self.prefix,
                page_size=self.settings.monitor_page_size,
                recreate_missing=recreate,
            )
        ctx = Context(needs_password=self.settings.api_surface == ApiSurface.V6)
        fixes = reconcile.plan(found, ctx, restore_credits=recreate)
        notes: dict[tuple[Any, str], list[str]] = {}
        for f in fixes:
            notes.setdefault((f.drift.kind, f.drift.username), []).append(f.note)
        items = [{**i.to_json(), "fix": "; ".join(notes.get((i.drift.kind, i.drift.username), []))}
                 for i in found.items]  # fmt: skip
        fixable = [f for f in fixes if f.event is not None]
        missing = [i for i in found.items if i.drift.kind.value == "missing"]
        return {"items": items, "fixes": fixes, "fixable": fixable, "fix_id": self._keep(fixable),
                "missing": len(missing),
                "missing_credits": sum(i.last_balance or 0 for i in missing)}  # fmt: skip

    def kept_fix(self, fix_id: str) -> list[Fix]:
        raw: Any = self.redis.get(keys.console_plan(self.prefix, f"fix-{fix_id}"))
        if raw is None:
            raise InvalidInput("this reconcile report has expired: run it again")
        return [_fix(item) for item in json.loads(raw)]

    def fix(self, fix_id: str, operator: str) -> int:
        """Enqueue exactly the corrective events the report showed; audited by reconcile."""
        fixes = self.kept_fix(fix_id)
        self.redis.delete(keys.console_plan(self.prefix, f"fix-{fix_id}"))
        published = reconcile.apply(fixes, self.publisher, self.redis, self.prefix, operator)
        return len(published)

    def _keep(self, fixable: list[Fix]) -> str | None:
        if not fixable:
            return None
        fix_id = secrets.token_urlsafe(12)
        kept = [{**asdict(f), "drift": {**asdict(f.drift), "kind": f.drift.kind.value}}
                for f in fixable]  # fmt: skip
        name = keys.console_plan(self.prefix, f"fix-{fix_id}")
        self.redis.set(name, json.dumps(kept, default=str), ex=FIX_TTL_S)
        return fix_id


def _fix(item: dict[str, Any]) -> Fix:
    d = item["drift"]
    drift = Drift(DriftKind(d["kind"]), d["client_id"], d["username"], d["recorded"], d["actual"])
    return Fix(drift=drift, event=item["event"], note=item["note"])


def _alert(kind: str, at_s: float, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": kind,
        "at": int(at_s * 1000),
        "client_id": data.get("client_id"),
        "username": data.get("username"),
        "alert_id": data.get("alert_id"),
        "level": data.get("level"),
        "balance": data.get("balance"),
    }
