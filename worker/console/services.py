"""The console's one door to the operations and credits services (`worker.ops`, `worker.credits`).

Every page and API route calls a method here, and every method is a call into the same service
functions the CLI uses, with this process's Redis, settings and publisher: the console adds no
logic of its own. The objects returned are the services' own typed values; templates read their
attributes and the JSON API serialises them as the CLI's `--json` does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import redis

from worker import keys
from worker.console.views import line_chart, when
from worker.errors import SubaccountWorkerError
from worker.ops.dead_letters import DeadLetters
from worker.ops.outcomes import read_outcomes
from worker.pipeline.outcomes import DeadLetter
from worker.pipeline.publish import Publisher
from worker.runtime import redis_client
from worker.settings import Settings

CHART_MINUTES = 60
CHART_MAX_OUTCOMES = 20_000
FILTER_FIELDS = ("reason", "type", "client", "source", "step", "status", "since", "until", "q")


@dataclass(frozen=True)
class Filters:
    """The dead-letter filters of the page, the API and a replay/purge request."""

    values: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Filters:
        kept = {k: str(raw[k]).strip() for k in FILTER_FIELDS if raw.get(k)}
        return cls({k: v for k, v in kept.items() if v})

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def __bool__(self) -> bool:
        return bool(self.values)

    @property
    def query(self) -> str:
        """The filters as a query string, for links to the same listing."""
        return urlencode(dict(self.values))


@dataclass(frozen=True)
class Page:
    """One page of dead letters, newest first, and the cursor of the next page (None: last)."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    total: int


class NotFound(SubaccountWorkerError):
    """What the page asks for does not exist (any more)."""


class Unavailable(SubaccountWorkerError):
    """This build has no service for that yet."""


class Services:
    """The service calls of one console process, sharing its Redis connection pool."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self.prefix = settings.key_prefix
        self.dead = DeadLetters(client, settings.key_prefix)
        self.publisher = Publisher(client, settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        return cls(redis_client(settings), settings)

    def close(self) -> None:
        self.redis.close()

    # --- status and overview -----------------------------------------------------------------
    def status_json(self) -> dict[str, Any]:
        """The object of `status --json`."""
        return {"dead_letters": self.dead.counts_by_reason()}

    def overview(self) -> dict[str, Any]:
        """Everything the overview shows, for its template and its live stream."""
        status = self.status_json()
        by_reason = sorted(status["dead_letters"].items(), key=lambda kv: (-kv[1], kv[0]))
        now_ms = int(time.time() * 1000)
        outcomes = read_outcomes(self.redis, self.prefix, count=CHART_MAX_OUTCOMES)
        per_minute, by_outcome = outcomes_per_minute(outcomes, now_ms, CHART_MINUTES)
        chart = line_chart(
            per_minute, first_label=f"-{CHART_MINUTES} min", last_label=when(now_ms)[11:16]
        )
        return {
            "status": status,
            "dead_total": sum(n for _, n in by_reason),
            "by_reason": by_reason,
            "chart": chart,
            "chart_minutes": CHART_MINUTES,
            "outcomes_total": sum(per_minute),
            "by_outcome": sorted(by_outcome.items(), key=lambda kv: -kv[1]),
            "jobs": self.jobs(running_only=True),
            "low_credits": None,
            "drift": None,
        }

    # --- dead letters -----------------------------------------------------------------------
    def reasons(self) -> list[str]:
        return sorted(self.dead.counts_by_reason())

    def dead_letter_page(self, filters: Filters, cursor: str | None, limit: int) -> Page:
        letters = self.dead.list(
            reason=filters.get("reason"),
            client_id=filters.get("client"),
            event_type=filters.get("type"),
            limit=limit,
        )
        return Page([_view(d) for d in letters], None, self.dead.count())

    def dead_letters_json(self, filters: Filters, limit: int) -> list[dict[str, Any]]:
        return self.dead_letter_page(filters, None, limit).items

    def clusters(self) -> list[dict[str, Any]]:
        counts = self.dead.counts_by_reason()
        return [
            {"reason": r, "count": n, "query": urlencode({"reason": r})}
            for r, n in sorted(counts.items(), key=lambda kv: -kv[1])
        ]

    # --- replay and purge --------------------------------------------------------------------
    def plan(
        self, action: str, ids: list[str] | None, filters: Filters, resolve: str | None
    ) -> Any:
        raise Unavailable("replay plans come with the operations service")

    def plan_json(self, plan: Any) -> dict[str, Any]:
        raise Unavailable("replay plans come with the operations service")

    def plan_ids(self, plan: Any) -> list[str]:
        raise Unavailable("replay plans come with the operations service")

    def start_job(
        self, action: str, ids: list[str], filters: Filters, resolve: str | None, operator: str
    ) -> Any:
        raise Unavailable("replay jobs come with the operations service")

    def jobs(self, *, running_only: bool = False) -> list[Any]:
        return []

    def job(self, job_id: str) -> Any:
        raise NotFound(f"no job {job_id!r}")

    def job_json(self, job: Any) -> dict[str, Any]:
        raise Unavailable("replay jobs come with the operations service")

    def job_finished(self, job: Any) -> bool:
        return True

    def cancel_job(self, job_id: str, operator: str) -> Any:
        raise NotFound(f"no job {job_id!r}")

    # --- events, clients ---------------------------------------------------------------------
    def event(self, event_id: str) -> dict[str, Any]:
        letter = self.dead.get(event_id)
        if letter is None:
            raise NotFound(f"no event {event_id!r} known")
        return {"id": event_id, "dead_letter": _view(letter), "envelope": letter.event}

    def client(self, client_id: str) -> dict[str, Any]:
        raw: Any = self.redis.lrange(keys.timeline(self.prefix, client_id), 0, 199)
        state: Any = self.redis.get(keys.client(self.prefix, client_id))
        return {
            "client_id": client_id,
            "state": json.loads(state) if state else None,
            "timeline": [json.loads(item) for item in raw],
        }

    # --- credits and audit -------------------------------------------------------------------
    def credits(self) -> dict[str, Any]:
        return {"rows": None, "alerts": None}

    def reconcile(self) -> Any:
        raise Unavailable("reconcile comes with the credits service")

    def fix_plan(self) -> Any:
        raise Unavailable("reconcile comes with the credits service")

    def fix(self, ids: list[str], operator: str) -> Any:
        raise Unavailable("reconcile comes with the credits service")

    def audit(self, query: Mapping[str, str]) -> list[Any]:
        return []

    def audit_lines(self, query: Mapping[str, str]) -> Iterator[str]:
        for entry in self.audit(query):
            yield json.dumps(entry, default=str) + "\n"


def outcomes_per_minute(
    outcomes: list[dict[str, Any]], now_ms: int, minutes: int
) -> tuple[list[int], dict[str, int]]:
    """Bucket outcome records into the last `minutes` minutes (oldest first), and count kinds."""
    buckets = [0] * minutes
    kinds: dict[str, int] = {}
    for record in outcomes:
        age_min = (now_ms - int(record.get("at_ms") or 0)) // 60_000
        if 0 <= age_min < minutes:
            buckets[minutes - 1 - age_min] += 1
            kind = str(record.get("outcome", ""))
            kinds[kind] = kinds.get(kind, 0) + 1
    return buckets, kinds


def _view(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter in the shape of `dead-letters list --json`."""
    return {
        "id": letter.key,
        "event_id": str(letter.event.get("id", "")),
        "reason": letter.reason,
        "type": letter.event_type,
        "subject": letter.client_id,
        "source": str(letter.event.get("source", "")),
        "attempts": letter.attempts,
        "detail": letter.detail,
        "step": letter.step,
        "readings": letter.readings,
        "first_failed_at": letter.first_failure_ms,
        "last_failed_at": letter.last_failure_ms,
    }
