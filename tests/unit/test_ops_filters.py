"""Dead-letter filters: what an operator types becomes a value that matches records."""

from __future__ import annotations

import pytest

from worker.ops.filters import DeadLetterFilter, InvalidInput, check_limit, http_status, parse_time
from worker.ops.index import cluster_of
from worker.pipeline.outcomes import DeadLetter

NOW = 1_800_000_000_000


def letter(**changes: object) -> DeadLetter:
    values: dict[str, object] = {
        "key": "k1",
        "event": {"id": "e1", "source": "urn:billing", "type": "invoice.paid", "subject": "acme"},
        "reason": "retries_exhausted",
        "detail": "2 attempts; last: add_credits failed (HTTP 503): Server error",
        "attempts": 2,
        "first_failure_ms": NOW - 60_000,
        "last_failure_ms": NOW - 1000,
        "step": "add_credits",
    }
    values.update(changes)
    return DeadLetter(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - 90_000),  # relative, seconds
        ("2h", NOW - 7_200_000),  # relative, hours
        ("7d", NOW - 7 * 86_400_000),  # relative, days
        ("2027-01-15T08:00:00Z", NOW),  # RFC 3339, UTC
        ("2027-01-15T09:00:00+01:00", NOW),  # RFC 3339 with an offset
    ],
)
def test_times_are_rfc3339_or_relative(text: str, expected: int) -> None:
    """Both forms an operator types reach the same milliseconds."""
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "2027-01-15T08:00:00", "-5m"])
def test_unreadable_times_are_refused_with_the_option_named(text: str) -> None:
    """A time without offset or unit is bad input, named in the message."""
    with pytest.raises(InvalidInput, match="--since"):
        DeadLetterFilter.parse(since=text, now_ms=NOW)


def test_each_condition_must_match() -> None:
    """Every given field narrows; absent ones match anything."""
    dead = letter()
    assert DeadLetterFilter().matches(dead)
    every = DeadLetterFilter.parse(reason="retries_exhausted", status="503", step="add_credits",
                                   source="urn:billing", client="acme", type="invoice.paid",
                                   search="SERVER ERROR", since="5m", now_ms=NOW)  # fmt: skip
    assert every.matches(dead)
    assert not DeadLetterFilter.parse(status="500").matches(dead)
    assert not DeadLetterFilter.parse(client="other").matches(dead)
    assert not DeadLetterFilter.parse(until="5m", now_ms=NOW).matches(dead)
    assert not DeadLetterFilter.parse(search="timeout").matches(dead)


def test_status_and_cluster_come_from_the_detail_or_readings() -> None:
    """`(HTTP 503)` in the detail, or a `status` reading; none when no answer came."""
    assert http_status(letter()) == 503
    assert http_status(letter(detail="no answer", readings={"status": 502})) == 502
    assert http_status(letter(detail="client unknown", step=None)) is None
    assert cluster_of(letter()) == "retries_exhausted|invoice.paid|add_credits|503"
    assert cluster_of(letter(detail="x", step=None)) == "retries_exhausted|invoice.paid|-|-"


@pytest.mark.parametrize(("value", "ok"), [(1, True), (None, True), (0, False), (-1, False)])
def test_a_limit_must_be_positive(value: int | None, ok: bool) -> None:
    """`--limit 0` or negative used to list everything (issue 10.4): now bad input."""
    if ok:
        assert check_limit(value) == value
    else:
        with pytest.raises(InvalidInput, match="--limit"):
            check_limit(value)


def test_bad_status_is_refused() -> None:
    with pytest.raises(InvalidInput, match="--status"):
        DeadLetterFilter.parse(status="abc")
    with pytest.raises(InvalidInput, match="100-599"):
        DeadLetterFilter.parse(status="42")


def test_the_filter_reports_itself_in_rfc3339() -> None:
    """Jobs and the audit keep the filter as the operator would read it."""
    flt = DeadLetterFilter.parse(reason="not_found", since="2027-01-15T08:00:00Z", now_ms=NOW)
    assert flt.to_json() == {"reason": "not_found", "since": "2027-01-15T08:00:00.000Z"}


@pytest.mark.parametrize(
    ("field", "typo", "meant"),
    [("reason", "client-unknown", "client_unknown"), ("type", "invoice_paid", "invoice.paid"),
     ("step", "Add-Credits", "add_credits")],
)  # fmt: skip
def test_a_filter_typo_names_the_valid_values(field: str, typo: str, meant: str) -> None:
    """An unknown reason, type or step is refused with the valid values, never matched as
    "nothing" (which reads as all-clear)."""
    with pytest.raises(InvalidInput, match=f"is not one of: .*did you mean {meant}"):
        DeadLetterFilter.parse(**{field: typo})
    assert DeadLetterFilter.parse(**{field: meant}).to_json() == {field: meant}
