"""Dead-letter pages follow a cursor (below the last page's failure time, minus what was shown at
that same millisecond): every dead letter appears once, in order, whatever the ties."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from tests.console.support import write_dead_letter
from worker.pipeline.attempts import AttemptStore

Login = Callable[[str], tuple[httpx.Client, str]]
ROW = re.compile(r'<tr data-id="([0-9a-f]+)">')
NEXT = re.compile(r'href="(/dead-letters\?[^"]*after=[^"]+)"[^>]*rel="next"')


def test_paging_walks_every_dead_letter_once_across_equal_failure_times(
    as_role: Login, store: AttemptStore
) -> None:
    # 130 dead letters on 2 milliseconds (70 + 60): pages of 50 cut through runs of ties.
    written = [
        write_dead_letter(store, f"c{n % 7}", n=n, at_ms=1_700_000_000_000 + (n // 70) * 1000)
        for n in range(130)
    ]
    client, _ = as_role("viewer")
    seen: list[str] = []
    path: str | None = "/dead-letters"
    pages = 0
    while path:
        page = client.get(path.replace("&amp;", "&")).text
        seen += ROW.findall(page)
        assert "of 130 matching" in page
        found = NEXT.search(page)
        path = found.group(1) if found else None
        pages += 1
    assert pages == 3
    assert len(seen) == len(set(seen)) == 130
    assert set(seen) == {letter.key for letter in written}


def test_paging_keeps_the_filter(as_role: Login, store: AttemptStore) -> None:
    for n in range(60):
        write_dead_letter(store, "acme" if n % 2 else "other", n=n)
    client, _ = as_role("viewer")
    first = client.get("/dead-letters?client=acme").text
    found = NEXT.search(first)
    assert found is None  # 30 fit on one page
    assert "30 shown of 30 matching" in first
