"""One object per thread, made on first use: the connections a worker thread keeps for itself.

A Dramatiq worker thread handles one message at a time for the life of the process, so a
connection of its own is never contended and needs no pool lookup per call. It is closed when
its thread ends, or by `close_all` at shutdown. A forked child (whose copy of a parent's
connection would share the parent's socket) makes its own.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Held:
    """Lives as long as its thread's local storage; its finalizer closes the value."""

    __slots__ = ("__weakref__", "pid", "value")

    def __init__(self, value: object) -> None:
        self.pid = os.getpid()
        self.value = value


class PerThread(Generic[T]):
    """Gives each thread (of each process) its own `T`, made by `make`, closed by `close`."""

    def __init__(self, make: Callable[[], T], close: Callable[[T], object]) -> None:
        self._make = make
        self._close = close
        self._local = threading.local()
        self._finalizers: list[weakref.finalize[..., object]] = []
        self._lock = threading.Lock()

    def get(self) -> T:
        held: _Held | None = getattr(self._local, "held", None)
        if held is None or held.pid != os.getpid():
            held = self._local.held = _Held(self._make())
            with self._lock:  # (dropping those whose threads have ended)
                self._finalizers = [f for f in self._finalizers if f.alive]
                self._finalizers.append(weakref.finalize(held, self._close, held.value))
        value: T = held.value  # type: ignore[assignment]
        return value

    def close_all(self) -> None:
        """Close every thread's object now (a thread that calls `get` again makes a new one)."""
        with self._lock:
            finalizers, self._finalizers = self._finalizers, []
        for finalize in finalizers:
            finalize()  # (a no-op for one its thread's end already ran)
        self._local = threading.local()
