"""Which dead letters an operator means: one filter value, parsed from text and matched.

The CLI and the console build a `DeadLetterFilter` with `DeadLetterFilter.parse(...)` from what
the operator typed (times as RFC 3339 or relative, like `2h`); `matches` decides on one record.
A dead letter's HTTP status is read from its detail (`... failed (HTTP 503): ...`, as every
`ApiError` spells it) or from its readings.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, get_args

from handlers.events import EventType
from handlers.outcomes import Reason
from handlers.plan import Step
from worker.errors import SubaccountWorkerError
from worker.pipeline.outcomes import DeadLetter

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_HTTP_STATUS = re.compile(r"\(HTTP (\d{3})\)")
_WORD = re.compile(r"[a-z0-9][a-z0-9_.:-]*[a-z0-9]|[a-z0-9]")
WORDS_KEPT = 32  # words of one detail indexed and searched (the detail's first ones)
# The closed sets a filter names: a value outside them is a typo, never "0 of 0 shown".
REASONS: tuple[str, ...] = tuple(reason.value for reason in Reason)
TYPES: tuple[str, ...] = tuple(kind.value for kind in EventType)
STEPS: tuple[str, ...] = tuple(
    str(kind.model_fields["kind"].default) for kind in get_args(get_args(Step)[0])
)


class InvalidInput(SubaccountWorkerError):
    """What the operator asked for cannot be understood (a bad filter, limit or file): fix it."""


@dataclass(frozen=True)
class DeadLetterFilter:
    """Every field None means "any"; all given fields must match."""

    reason: str | None = None
    type: str | None = None
    client: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    status: int | None = None
    step: str | None = None
    source: str | None = None
    search: str | None = None

    @classmethod
    def parse(
        cls,
        *,
        reason: str | None = None,
        type: str | None = None,
        client: str | None = None,
        since: str | None = None,
        until: str | None = None,
        status: str | int | None = None,
        step: str | None = None,
        source: str | None = None,
        search: str | None = None,
        now_ms: int | None = None,
    ) -> DeadLetterFilter:
        """A filter from the operator's text; InvalidInput names the bad part."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        return cls(
            reason=one_of(reason, REASONS, "--reason"),
            type=one_of(type, TYPES, "--type"),
            client=client or None,
            since_ms=parse_time(since, now, "--since") if since else None,
            until_ms=parse_time(until, now, "--until") if until else None,
            status=_status(status),
            step=one_of(step, STEPS, "--step"),
            source=source or None,
            search=search or None,
        )

    @property
    def empty(self) -> bool:
        return all(value is None for value in asdict(self).values())

    def matches(self, letter: DeadLetter) -> bool:
        """Does `letter` pass every given condition?"""
        if self.since_ms is not None and letter.last_failure_ms < self.since_ms:
            return False
        if self.until_ms is not None and letter.last_failure_ms > self.until_ms:
            return False
        return all(
            expected is None or expected == actual
            for expected, actual in (
                (self.reason, letter.reason),
                (self.type, letter.event_type),
                (self.client, letter.client_id),
                (self.status, http_status(letter)),
                (self.step, letter.step),
                (self.source, source_of(letter)),
            )
        ) and (self.search is None or matches_search(letter, self.search))

    def to_json(self) -> dict[str, Any]:
        """The given conditions only, times as RFC 3339 (for jobs, the audit and `--json`)."""
        out: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if value is None:
                continue
            if name.endswith("_ms"):
                out[name.removesuffix("_ms")] = rfc3339(value)
            else:
                out[name] = value
        return out


def one_of(value: str | None, valid: tuple[str, ...], option: str) -> str | None:
    """`value` if it is one of `valid` (None if not given); InvalidInput lists the valid ones
    and, for a near miss (`client-unknown`, `invoice_paid`), the one probably meant."""
    if not value:
        return None
    if value in valid:
        return value
    folded = {_fold(v): v for v in valid}
    near = folded.get(_fold(value))
    hint = f" (did you mean {near}?)" if near else ""
    raise InvalidInput(f"{option} {value!r} is not one of: {', '.join(valid)}{hint}")


def _fold(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def parse_time(text: str, now_ms: int, option: str = "time") -> int:
    """RFC 3339 (`2026-12-01T10:00:00Z`) or relative to now (`90s`, `15m`, `2h`, `7d`) → ms."""
    text = text.strip()
    relative = _RELATIVE.match(text)
    if relative:
        return now_ms - int(relative.group(1)) * _UNIT_S[relative.group(2)] * 1000
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{option} {text!r} is neither RFC 3339 (2026-12-01T10:00:00Z) nor relative (2h)"
        ) from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{option} {text!r} needs a UTC offset, e.g. {text}Z")
    return int(moment.timestamp() * 1000)


def rfc3339(ms: int | None) -> str | None:
    """Epoch milliseconds as RFC 3339 UTC, e.g. 2026-12-01T10:00:00.123Z."""
    if ms is None:
        return None
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def http_status(letter: DeadLetter) -> int | None:
    """The HTTP status of the last error, if one was answered."""
    status = letter.readings.get("status")
    if isinstance(status, int):
        return status
    found = _HTTP_STATUS.search(letter.detail)
    return int(found.group(1)) if found else None


def identifiers_of(letter: DeadLetter) -> dict[str, str]:
    """What an operator knows a dead letter by: event id, invoice id, business key, client."""
    data = letter.event.get("data")
    invoice = data.get("invoice_id") if isinstance(data, dict) else None
    found = {
        "event": str(letter.event.get("id") or ""),
        "invoice": invoice if isinstance(invoice, str) else "",
        "business_key": letter.business_key or "",
        "client": letter.client_id,
    }
    return {dim: value for dim, value in found.items() if value}


def words(text: str) -> list[str]:
    """The words of a text as the index keeps them: lower case, in order, each once."""
    return list(dict.fromkeys(_WORD.findall(text.lower())))


def matches_search(letter: DeadLetter, query: str) -> bool:
    """Does `letter` answer the search: an identifier equal to or starting with the query (any
    case), or every word of the query among the detail's words?"""
    q = query.strip().lower()
    if not q:
        return True
    if any(value.lower().startswith(q) for value in identifiers_of(letter).values()):
        return True
    wanted = words(q)
    return bool(wanted) and set(wanted) <= set(words(letter.detail)[:WORDS_KEPT])


def source_of(letter: DeadLetter) -> str:
    return str(letter.event.get("source", ""))


def check_limit(limit: int | None) -> int | None:
    """A listing limit must be positive (None: no limit)."""
    if limit is not None and limit < 1:
        raise InvalidInput(f"--limit must be at least 1 (got {limit}); use --all for everything")
    return limit


def _status(value: str | int | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        status = int(value)
    except ValueError:
        raise InvalidInput(f"--status {value!r} is not an HTTP status code like 503") from None
    if not 100 <= status <= 599:
        raise InvalidInput(f"--status {status} is not an HTTP status code (100-599)")
    return status
