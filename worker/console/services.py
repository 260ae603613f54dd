"""The console's one door to the operations and credits services (`worker.ops`, `worker.credits`).

Every page and API route calls a method here, and every method is a call into the same service
functions the CLI uses, with this process's Redis, settings and publisher: the console adds no
logic of its own. The objects returned are the services' own typed values; templates read their
attributes and the JSON API serialises them as the CLI's `--json` does.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import redis

from handlers import Context
from worker import keys
from worker.console.credit_services import CreditServices
from worker.console.jobs import BackgroundJobs, IndexWarmer
from worker.console.views import line_chart, when
from worker.errors import SubaccountWorkerError
from worker.ops.advice import next_step
from worker.ops.api_health import api_health
from worker.ops.audit import AuditEntry, list_audit
from worker.ops.clusters import summarize
from worker.ops.dead_letters import DeadLetters
from worker.ops.filters import DeadLetterFilter, InvalidInput, parse_time
from worker.ops.job_records import Job, cancel_job, get_job, list_jobs, running_jobs
from worker.ops.jobs import Runner
from worker.ops.listing import DeadLetterView, list_dead_letters
from worker.ops.outcome_counts import read_api_calls, read_counts
from worker.ops.plans import Action, Plan, Resolve, select
from worker.ops.plans import plan as make_plan
from worker.ops.status import Status, read_status
from worker.ops.timeline import EventStory, client_story, event_story
from worker.pipeline.publish import Publisher
from worker.redis_access import connect
from worker.settings import ApiSurface, Settings

PLAN_TTL_S = 30 * 60
REDIS_CONNECTIONS = 64
TIMELINE_SHOWN = 200  # newest entries drawn on a client's page
CHART_MINUTES = 60
OVERVIEW_CACHE_S = 1.5  # viewers and their live streams share one reading
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
    """One page of dead letters (newest first), the cursor of the next page (None: the last)
    and how many match in all."""

    items: list[DeadLetterView]
    next_cursor: str | None
    total: int


@dataclass(frozen=True)
class JobView:
    """A recorded job with the figures its progress bar shows."""

    job: Job

    def __getattr__(self, name: str) -> Any:
        return getattr(self.job, name)

    @property
    def processed(self) -> int:
        return self.job.done + self.job.skipped

    @property
    def total(self) -> int:
        return self.job.planned

    @property
    def percent(self) -> int:
        return 100 if not self.total else (100 * self.processed) // self.total

    @property
    def running(self) -> bool:
        return self.job.state == "running"

    @property
    def outcome_rows(self) -> list[tuple[str, str, str]]:
        """The breakdown's rows: (outcome, label, css class), the ones that happened first."""
        rows = [
            ("applied", "applied", "ok"),
            ("duplicate", "duplicate (already applied)", "ok"),
            ("superseded", "superseded", "ok"),
            ("ignored", "ignored", "muted"),
            ("dead_lettered_again", "dead-lettered again", "error"),
            ("pending", "still queued or retrying", "warn"),
        ]
        counts = self.job.breakdown()
        return [row for row in rows if counts.get(row[0])] + [
            row for row in rows if not counts.get(row[0])
        ]

    @property
    def started_at(self) -> int:
        return self.job.started_ms


class NotFound(SubaccountWorkerError):
    """What the page asks for does not exist (any more)."""


class Services:
    """The service calls of one console process, sharing its Redis connection pool."""

    def __init__(self, client: redis.Redis, settings: Settings, *, warm_index: bool = True) -> None:
        self.redis = client
        self.settings = settings
        self.prefix = settings.key_prefix
        self.dead = DeadLetters(client, settings.key_prefix)
        self.publisher = Publisher(client, settings)
        self.runs = BackgroundJobs()
        self.warmer = IndexWarmer(client, settings.key_prefix)
        if warm_index:
            self.warmer.start()
        self.credit = CreditServices(client, settings, self.publisher)
        self._overview_lock = threading.Lock()
        self._overview: tuple[float, dict[str, Any] | None] = (0.0, None)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        return cls(console_redis(settings), settings)

    @classmethod
    def for_viewers(cls, settings: Settings) -> Services | None:
        """Services on REDIS_READ_URL's read-only user for viewer sessions (None without one);
        they never write, so they warm no index."""
        if not settings.redis_read_url:
            return None
        client = console_redis(settings, settings.redis_read_url)
        return cls(client, settings, warm_index=False)

    def close(self) -> None:
        self.runs.stop_all()
        self.warmer.stop()
        self.redis.close()

    # --- status and overview -----------------------------------------------------------------
    def status(self) -> Status:
        return read_status(
            self.redis,
            self.prefix,
            self.settings.queue_name,
            self.settings.heartbeat_timeout_ms,
            keyspace=self.publisher.keyspace,
        )

    def status_json(self) -> dict[str, Any]:
        """The object of `status --json`."""
        return self.status().to_json()

    def overview(self, *, fresh: bool = False) -> dict[str, Any]:
        """Everything the overview shows, for its template and its live feed (one reading
        shared for `OVERVIEW_CACHE_S`, however many viewers; `fresh` reads anew)."""
        with self._overview_lock:
            at, cached = self._overview
            if fresh or cached is None or time.monotonic() - at > OVERVIEW_CACHE_S:
                cached = self._read_overview()
                self._overview = (time.monotonic(), cached)
            return cached

    def _read_overview(self) -> dict[str, Any]:
        status = self.status()
        low_credits, drift = self.credit.counts()
        by_reason = sorted(status.dead_letters.items(), key=lambda kv: (-kv[1], kv[0]))
        now_ms = int(time.time() * 1000)
        counts = read_counts(self.redis, self.prefix, now_ms, minutes=CHART_MINUTES)
        chart = line_chart(
            counts.per_minute(),
            first_label=f"-{CHART_MINUTES} min",
            last_label=when(now_ms)[11:16],
        )
        day_chart = line_chart(counts.per_hour(), first_label="-24 h", last_label="now")
        last_hour, last_day = counts.last_hour, counts.last_day
        return {
            "status": status,
            "dead_total": status.dead_letters_total,
            "by_reason": by_reason,
            "advice": {reason: next_step(reason) for reason, _ in by_reason},
            "chart": chart,
            "day_chart": day_chart,
            "chart_minutes": CHART_MINUTES,
            "outcomes_total": sum(last_hour.values()),
            "outcomes_day": sum(last_day.values()),
            "by_outcome": sorted(last_hour.items(), key=lambda kv: -kv[1]),
            "jobs": [JobView(job) for job in running_jobs(self.redis, self.prefix)],
            "low_credits": low_credits,
            "drift": drift,
            "api": api_health(self.redis, self.prefix),
            "api_calls": read_api_calls(self.redis, self.prefix, now_ms),
        }

    # --- dead letters -----------------------------------------------------------------------
    def reasons(self) -> list[str]:
        return sorted(self.dead.counts_by_reason())

    def dead_filter(self, filters: Filters) -> DeadLetterFilter:
        """The operations filter for the page's fields (InvalidInput names a bad one)."""
        v = filters.values
        return DeadLetterFilter.parse(
            reason=v.get("reason"),
            type=v.get("type"),
            client=v.get("client"),
            since=v.get("since"),
            until=v.get("until"),
            status=v.get("status"),
            step=v.get("step"),
            source=v.get("source"),
            search=v.get("q"),
        )

    def dead_letter_page(self, filters: Filters, cursor: str | None, limit: int) -> Page:
        """A page of the listing; later pages start below the previous page's last failure time
        (`until`), so a page costs the same at the 100,000th dead letter as at the first."""
        flt = self.dead_filter(filters)
        until_ms, skip, total = _read_cursor(cursor)
        if until_ms is not None:
            flt = replace(flt, until_ms=until_ms)
        page = list_dead_letters(self.redis, self.prefix, flt, limit=limit, offset=skip)
        total = total if total is not None else page.total
        more = page.total > skip + len(page.items)
        return Page(
            page.items, _next_cursor(page.items, until_ms, skip, total) if more else None, total
        )

    def dead_letters_json(self, filters: Filters, limit: int | None) -> list[dict[str, Any]]:
        """The array of `dead-letters list --json`."""
        flt = self.dead_filter(filters)
        page = list_dead_letters(self.redis, self.prefix, flt, limit=limit)
        return [item.to_json() for item in page.items]

    def clusters(self) -> list[dict[str, Any]]:
        """The failure clusters of `dead-letters summary`, each with its listing's query."""
        rows = []
        for cluster in summarize(self.redis, self.prefix).clusters:
            row = cluster.to_json()
            query = {"reason": cluster.reason, "type": cluster.type, "step": cluster.step}
            query["status"] = None if cluster.status is None else str(cluster.status)
            row["query"] = urlencode({k: v for k, v in query.items() if v})
            rows.append(row)
        return rows

    # --- replay and purge --------------------------------------------------------------------
    def plan(
        self,
        action: str,
        ids: list[str] | None,
        filters: Filters,
        resolve: str | None,
        previewed: Mapping[str, str] | None = None,
    ) -> Plan:
        """The operations plan of a replay or purge of `ids`, or of everything matching."""
        flt = self.dead_filter(filters) if ids is None else None
        if ids is not None and not ids:
            raise InvalidInput("select at least one dead letter, or everything matching")
        selection = select(self.redis, self.prefix, ids=ids, flt=flt)
        return make_plan(
            self.redis,
            self.prefix,
            selection,
            action=_action(action),
            resolve=_resolve(resolve),
            ctx=Context(needs_password=self.settings.api_surface == ApiSurface.V6),
            flt=flt,
            previewed=previewed,
        )

    def plan_json(self, plan: Plan) -> dict[str, Any]:
        return plan.to_json()

    def keep_plan(self, plan: Plan) -> str:
        """Keep what a preview planned (ids and the digest of each record) for its confirm."""
        plan_id = secrets.token_urlsafe(12)
        kept = {
            "action": plan.action,
            "resolve": plan.resolve,
            "filter": plan.filter,
            "items": {item.id: item.digest for item in plan.planned},
        }
        self.redis.set(keys.console_plan(self.prefix, plan_id), json.dumps(kept), ex=PLAN_TTL_S)
        return plan_id

    def kept_plan(self, plan_id: str) -> Plan:
        """The plan of a preview, again: exactly its ids, planned now, refusing any dead letter
        whose record changed since the preview (`previewed`, the operations' two-step check)."""
        raw: Any = self.redis.get(keys.console_plan(self.prefix, plan_id))
        if raw is None:
            raise InvalidInput("this preview has expired: preview again")
        kept = json.loads(raw)
        digests: dict[str, str] = kept["items"]
        fresh = self.plan(kept["action"], list(digests), Filters(), kept["resolve"], digests)
        return replace(fresh, filter=kept["filter"])

    def start_job(self, plan: Plan, operator: str, rate: float | None = None) -> JobView:
        """Run `plan` as a recorded job in a background thread; returns once it is recorded."""
        runner = Runner(
            self.redis, self.prefix, self.publisher, getattr(self.settings, "timeline_maxlen", 200)
        )
        job_id = self.runs.start(runner, plan, operator, rate)
        return self.job(job_id)

    def jobs(self, *, running_only: bool = False) -> list[JobView]:
        found = (
            running_jobs(self.redis, self.prefix)
            if running_only
            else list_jobs(self.redis, self.prefix)
        )
        return [JobView(job) for job in found]

    def job(self, job_id: str) -> JobView:
        found = get_job(self.redis, self.prefix, job_id)
        if found is None:
            raise NotFound(f"no job {job_id!r}: jobs are kept 30 days")
        return JobView(found)

    def job_json(self, job: JobView) -> dict[str, Any]:
        return job.job.to_json()

    def job_finished(self, job: JobView) -> bool:
        """Nothing more will change: its batches are done and every replayed event has ended
        (or its process is gone)."""
        return job.job.settled or job.state == "stale"

    def cancel_job(self, job_id: str, operator: str) -> JobView:
        found = cancel_job(self.redis, self.prefix, job_id, operator)
        if found is None:
            raise NotFound(f"no job {job_id!r}")
        self.runs.cancel(job_id)
        return JobView(found)

    # --- events, clients ---------------------------------------------------------------------
    def event(self, event_id: str, source: str | None = None) -> EventStory:
        """`events show`: envelope (redacted), ledger steps, outcomes, dead letter, replays."""
        try:
            return event_story(self.redis, self.prefix, event_id, source)
        except InvalidInput as exc:
            raise NotFound(str(exc)) from None

    def client(self, client_id: str) -> dict[str, Any]:
        """`clients show`: state, timeline and dead letters (and, with the credits service,
        the credits snapshot, its history and drift)."""
        story = client_story(self.redis, self.prefix, client_id)
        return {
            "client_id": story.client_id,
            "state": story.state,
            "timeline": story.timeline[:TIMELINE_SHOWN],
            "timeline_total": len(story.timeline),
            "dead_letters": story.dead_letters,
            "timeline_source": story.source,
            **self.credit.client(client_id),
        }

    # --- credits and audit -------------------------------------------------------------------
    def audit(self, query: Mapping[str, str], limit: int | None = 200) -> list[AuditEntry]:
        """Operator actions newest first, filtered by operator, action and `since`."""
        since = query.get("since")
        since_ms = parse_time(since, int(time.time() * 1000), "since") if since else None
        entries = list_audit(self.redis, self.prefix, since_ms=since_ms, limit=None)
        wanted = [
            e
            for e in entries
            if query.get("operator") in (None, e.operator)
            and query.get("action") in (None, e.action)
        ]
        return wanted[:limit] if limit else wanted

    def audit_lines(self, query: Mapping[str, str]) -> Iterator[str]:
        for entry in self.audit(query, limit=None):
            yield json.dumps(entry.to_json(), default=str) + "\n"


def console_redis(settings: Settings, url: str | None = None) -> redis.Redis:
    """A Redis client whose pool waits for a free connection instead of failing: the console's
    request threads, live streams and jobs may outnumber its connections for a moment (on
    `url`, default REDIS_URL)."""
    return connect(
        settings,
        url=url,
        blocking_s=5,
        max_connections=REDIS_CONNECTIONS,
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
        health_check_interval=30,
    )


def _read_cursor(cursor: str | None) -> tuple[int | None, int, int | None]:
    """`until_ms.skip.total` of the next page, or nothing for the first page."""
    if not cursor:
        return None, 0, None
    try:
        until, skip, total = (int(part) for part in cursor.split("."))
    except ValueError:
        raise InvalidInput(f"bad page cursor {cursor!r}: start from the first page") from None
    return until, skip, total


def _next_cursor(items: list[DeadLetterView], until_ms: int | None, skip: int, total: int) -> str:
    """Below the last item's failure time, skipping the items of that same millisecond that
    this page (and the pages before it, at that same time) already showed."""
    last = parse_time(items[-1].last_failed_at or "", 0)
    ties = sum(1 for item in items if parse_time(item.last_failed_at or "", 0) == last)
    if last == until_ms:
        ties += skip
    return f"{last}.{ties}.{total}"


def _action(name: str) -> Action:
    if name not in ("replay", "purge"):
        raise InvalidInput(f"unknown action {name!r}: replay or purge")
    return "replay" if name == "replay" else "purge"


def _resolve(value: str | None) -> Resolve | None:
    if value in (None, ""):
        return None
    if value == "applied":
        return "applied"
    if value == "not_applied":
        return "not_applied"
    raise InvalidInput(f"resolve is 'applied' or 'not_applied', not {value!r}")
