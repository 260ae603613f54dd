"""Reading events for `send`: a JSON array, one JSON object, or JSON Lines, in bounded memory.

The input is decoded as UTF-8 in 1 MiB chunks and parsed one value at a time, so memory does not
grow with the file. Each value comes out as an `Item` with its index and the line it starts on,
or with the reason it could not be read; in JSON Lines a bad line is reported and reading goes
on at the next line (so every bad line is named), while a JSON array cannot be resynchronised and
a bad element ends the reading. What cannot be read at all (not UTF-8, an unclosed array, text
after the array) raises `InvalidEvent` with one reason naming the line.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from handlers.errors import InvalidEvent
from handlers.events import MAX_EVENT_BYTES

CHUNK_BYTES = 1 << 20
WINDOW_CHARS = 2 * MAX_EVENT_BYTES  # at least this much text ahead of a value being parsed
_SPACE = re.compile(r"[ \t\r\n]*")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


@dataclass(frozen=True)
class Item:
    """One value of the input: `value`, or `error` saying why it is not one."""

    index: int
    line: int
    value: Any = None
    error: str | None = None

    @property
    def label(self) -> str:
        return f"[{self.index}] (line {self.line})"


class EventReader:
    """Iterates the values of a binary stream holding a JSON array, an object or JSON Lines."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._buf = ""
        self._pos = 0
        self._line = 1  # the line of self._pos
        self._bytes = 0  # bytes read so far
        self._eof = False

    def __iter__(self) -> Iterator[Item]:
        self._skip_space()
        if self._at_end():
            return
        if self._buf[self._pos] == "[":
            yield from self._array()
        else:
            yield from self._lines()

    # --- the two layouts ---------------------------------------------------------------------

    def _array(self) -> Iterator[Item]:
        """`[v, v, ...]`: a bad element ends the reading (an array cannot be resynchronised)."""
        self._advance(self._pos + 1)
        index = 0
        self._skip_space()
        if self._peek() == "]":
            self._advance(self._pos + 1)
            self._after_array()
            return
        while True:
            if self._at_end():
                raise InvalidEvent([f"line {self._line}: the array is not closed (truncated?)"])
            item = self._value(index)
            if item.error is not None:
                raise InvalidEvent([f"{item.label} {item.error}"])
            yield item
            index += 1
            self._skip_space()
            found = self._peek()
            if found == ",":
                self._advance(self._pos + 1)
                self._skip_space()
            elif found == "]":
                self._advance(self._pos + 1)
                self._after_array()
                return
            elif found == "":
                raise InvalidEvent([f"line {self._line}: the array is not closed (truncated?)"])
            else:
                raise InvalidEvent(
                    [f"line {self._line}: expected ',' or ']' after item [{index - 1}]"]
                )

    def _after_array(self) -> None:
        self._skip_space()
        if not self._at_end():
            raise InvalidEvent([f"line {self._line}: unexpected text after the array"])

    def _lines(self) -> Iterator[Item]:
        """JSON Lines, or one (pretty-printed) object: a bad line is reported, then skipped."""
        index = 0
        while True:
            self._skip_space()
            if self._at_end():
                return
            item = self._value(index)
            if item.error is not None:
                self._skip_line()
            yield item
            index += 1

    # --- one value -----------------------------------------------------------------------------

    def _value(self, index: int) -> Item:
        """The value at the current position, or why there is none; moves past it."""
        self._fill()
        line, start = self._line, self._pos
        try:
            value, end = _DECODER.raw_decode(self._buf, start)
        except json.JSONDecodeError as exc:
            tail = " or longer than the limit" if len(self._buf) - start >= WINDOW_CHARS else ""
            return Item(index, line, error=f"not valid JSON ({exc.msg}{tail})")
        except RecursionError:
            return Item(index, line, error="not valid JSON (nested too deeply)")
        except ValueError as exc:  # an integer of thousands of digits, NaN, Infinity
            why = "a number too long" if "digits" in str(exc) else str(exc)
            return Item(index, line, error=f"not valid JSON ({why})")
        self._advance(end)
        if end - start > MAX_EVENT_BYTES:
            return Item(index, line, error=f"event: larger than {MAX_EVENT_BYTES} bytes")
        return Item(index, line, value=value)

    # --- the buffer ----------------------------------------------------------------------------

    def _fill(self) -> None:
        """Read until WINDOW_CHARS of text lie ahead of the position, or the input ends."""
        while not self._eof and len(self._buf) - self._pos < WINDOW_CHARS:
            chunk = self._stream.read(CHUNK_BYTES)
            try:
                text = self._utf8.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                line = (
                    self._line + self._buf.count("\n", self._pos) + chunk.count(b"\n", 0, exc.start)
                )
                at = self._bytes + exc.start
                raise InvalidEvent(
                    [f"line {line}: not UTF-8 text (byte {at}); events are JSON"]
                ) from None
            self._bytes += len(chunk)
            self._eof = not chunk
            self._buf = self._buf[self._pos :] + text
            self._pos = 0

    def _advance(self, to: int) -> None:
        self._line += self._buf.count("\n", self._pos, to)
        self._pos = to

    def _skip_space(self) -> None:
        while True:
            self._fill()
            match = _SPACE.match(self._buf, self._pos)
            self._advance(match.end() if match else self._pos)
            if self._pos < len(self._buf) or self._eof:
                return

    def _skip_line(self) -> None:
        """Move past the next newline (reading on as far as it takes), or to the end."""
        while True:
            newline = self._buf.find("\n", self._pos)
            if newline >= 0:
                self._advance(newline + 1)
                return
            self._advance(len(self._buf))
            if self._eof:
                return
            self._fill()

    def _peek(self) -> str:
        self._fill()
        return self._buf[self._pos] if self._pos < len(self._buf) else ""

    def _at_end(self) -> bool:
        return self._peek() == ""
