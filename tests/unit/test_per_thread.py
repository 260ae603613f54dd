"""One object per thread, closed when its thread ends or at shutdown (worker.per_thread)."""

from __future__ import annotations

import threading

from worker.per_thread import PerThread


class Resource:
    def __init__(self) -> None:
        self.closed = False


def _in_thread(per: PerThread[Resource]) -> Resource:
    got: list[Resource] = []
    thread = threading.Thread(target=lambda: got.append(per.get()))
    thread.start()
    thread.join()
    return got[0]


def _make_and_close() -> tuple[list[Resource], PerThread[Resource]]:
    made: list[Resource] = []

    def make() -> Resource:
        made.append(Resource())
        return made[-1]

    return made, PerThread(make, lambda r: setattr(r, "closed", True))


def test_a_thread_reuses_its_object_and_others_get_their_own() -> None:
    made, per = _make_and_close()
    mine = per.get()
    assert per.get() is mine
    theirs = _in_thread(per)
    assert theirs is not mine
    assert len(made) == 2


def test_an_ended_threads_object_is_closed_and_a_live_ones_kept() -> None:
    _made, per = _make_and_close()
    mine = per.get()
    theirs = _in_thread(per)
    assert theirs.closed
    assert not mine.closed


def test_close_all_closes_every_object_and_later_calls_make_new_ones() -> None:
    made, per = _make_and_close()
    first = per.get()
    per.close_all()
    assert first.closed
    second = per.get()
    assert second is not first
    assert not second.closed
    assert len(made) == 2
