"""Threads for tests of per-thread state: run work in them, keep them alive while checking."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def threads_kept_alive(count: int, work: Callable[[], object]) -> Iterator[None]:
    """Run `work` once in each of `count` threads; inside the block they have finished it but
    are still alive (their per-thread objects too); on leaving, they end and are joined."""
    done, release = threading.Barrier(count + 1), threading.Event()

    def run() -> None:
        try:
            work()
        finally:
            done.wait()
            release.wait()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    done.wait()
    try:
        yield
    finally:
        release.set()
        for thread in threads:
            thread.join()
