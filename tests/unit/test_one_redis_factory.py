"""Issue 21: one connection factory. Every process reaches Redis through
`worker.redis_access.connect` (plain URL or Sentinel), so none can miss a failover; a client made
elsewhere from a URL would keep talking to a dead or demoted master."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MADE_FROM_A_URL = re.compile(r"\b(Redis|ConnectionPool)\.from_url\(|\bredis\.Redis\(")
# The factory itself; the local dev servers and the sandbox make clients of servers they started.
ALLOWED = ("worker/redis_access.py", "worker/dev/", "worker/sandbox/")


def offenders(root: Path) -> list[str]:
    found = []
    for path in sorted((root / "worker").rglob("*.py")):
        name = str(path.relative_to(root))
        if name.startswith(ALLOWED):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if MADE_FROM_A_URL.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    return found


def test_every_client_comes_from_the_factory() -> None:
    assert offenders(ROOT) == []


def test_the_check_sees_a_client_made_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "rogue.py").write_text("c = redis.Redis.from_url(url)\n")
    assert offenders(tmp_path) == ["worker/rogue.py:1: c = redis.Redis.from_url(url)"]
