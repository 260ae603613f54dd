"""Reading `send`'s input: each value with its index and line, bad ones named, in bounded pieces."""

from __future__ import annotations

import io

import pytest
import typer

from handlers.errors import InvalidEvent
from worker.cli.base import guard
from worker.cli.event_files import CHUNK_BYTES, EventReader
from worker.errors import ConfigError


def read(data: bytes) -> list[tuple[int, int, object]]:
    """(index, line, value or 'ERR why') of every item."""
    return [
        (item.index, item.line, item.value if item.error is None else f"ERR {item.error}")
        for item in EventReader(io.BytesIO(data))
    ]


def test_an_array_yields_its_items_with_their_lines() -> None:
    """Items of a pretty-printed array carry the line they start on."""
    assert read(b'[\n  {"a": 1},\n  {"b": 2}\n]\n') == [(0, 2, {"a": 1}), (1, 3, {"b": 2})]


def test_json_lines_report_a_bad_line_and_read_on() -> None:
    """A bad line is one item with its reason; the next lines are still read."""
    assert read(b'{"a": 1}\nnot json\n\n{"b": 2}\n') == [
        (0, 1, {"a": 1}),
        (1, 2, "ERR not valid JSON (Expecting value)"),
        (2, 4, {"b": 2}),
    ]


def test_one_object_over_several_lines_is_one_item() -> None:
    assert read(b'{\n "a": 1,\n "b": [1, 2]\n}') == [(0, 1, {"a": 1, "b": [1, 2]})]


# Rows: (input, the one reason that ends the reading)
FATAL = [
    (b'[{"a": 1},\n{"b": 2}', "line 2: the array is not closed (truncated?)"),
    (b'[{"a": 1}] {"b": 2}', "line 1: unexpected text after the array"),
    (b'[{"a": 1} {"b": 2}]', "line 1: expected ',' or ']' after item [0]"),
    (b'{"a": 1}\n\xff\xfe', "line 2: not UTF-8 text (byte 9); events are JSON"),
]


@pytest.mark.parametrize(("data", "reason"), FATAL)
def test_unreadable_input_ends_with_one_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        read(data)
    assert caught.value.reasons == [reason]


def test_values_spanning_chunk_boundaries_are_read_whole() -> None:
    """Lines are read whole across the 1 MiB pieces the input is decoded in (and é's bytes)."""
    line = b'{"pad": "' + "é".encode() * 5000 + b'"}\n'
    data = line * (3 * CHUNK_BYTES // len(line) + 1)
    items = read(data)
    assert len(items) == data.count(b"\n")
    assert all(value == {"pad": "é" * 5000} for _, _, value in items)
    assert items[-1][1] == len(items)  # line numbers stay right across pieces


@pytest.mark.parametrize("error", [InvalidEvent(["data.credits: bad"]), ConfigError("bad")])
def test_guard_turns_both_error_roots_into_exit_2(error: Exception) -> None:
    """InvalidEvent (handlers) is caught beside SubaccountWorkerError (worker): exit 2."""

    def fail() -> None:
        raise error

    with pytest.raises(typer.Exit) as caught:
        guard(fail)
    assert caught.value.exit_code == 2
