"""Docs that cannot drift: every path they name exists, and nothing in them goes stale by itself.

- a backticked path in README.md, CONTRIBUTING.md or docs/ names a file or folder of the repo
  (a bare file name: some file of that name);
- no count of a kind of thing in prose ("seven events", "eight operations"): the catalogue grows;
- no issue numbers in code or docs (the tracker is not part of the product), no "(being built)".
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
CODE = [p for folder in ("worker", "handlers") for p in sorted((ROOT / folder).rglob("*.py"))]

BACKTICKED = re.compile(r"`([^`\s]+)`")
PATH_LIKE = re.compile(
    r"^[\w.-]+(/[\w.-]*)+$|^[\w-]+\.(py|md|yml|yaml|lua|json|png|toml|sh|lock|acl)$"
)
NUMBER = r"(two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
THINGS = r"(events?|operations?|event types|types|reasons|steps|commands|routes|pages|rooms)"
COUNT = re.compile(rf"\b{NUMBER} {THINGS}\b", re.IGNORECASE)
ISSUE = re.compile(r"\bissues? #?\d+\b|\(being built\)", re.IGNORECASE)


def named_paths(doc: Path) -> list[str]:
    """Backticked tokens of `doc` that look like repository paths (no URLs, globs or commands)."""
    found = []
    for token in BACKTICKED.findall(doc.read_text()):
        token = token.rstrip(".,:;")
        if "://" in token or any(c in token for c in "<>*{}$=") or token.startswith(("/", "~")):
            continue
        if PATH_LIKE.match(token):
            found.append(token.split("::")[0].split("#")[0])
    return found


def _exists(doc: Path, path: str, root: Path = ROOT) -> bool:
    """A path with a folder: from the repo root or the doc's folder. A bare file name (prose
    says `settings.py` beside its folder): some file of that name somewhere in the repo."""
    if "/" in path.rstrip("/"):
        return any((base / path).exists() for base in (root, doc.parent))
    return any(root.rglob(path))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_backticked_path_exists(doc: Path) -> None:
    """Each backticked path names a file or folder (from the repo root or the doc's folder)."""
    assert [p for p in named_paths(doc) if not _exists(doc, p)] == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_counts_in_prose(doc: Path) -> None:
    """No "seven events" or "eight operations": a count in prose is stale at the next addition."""
    assert COUNT.findall(doc.read_text()) == []


def test_no_issue_numbers_in_code_or_docs() -> None:
    """Neither the code nor the docs cite the tracker's issue numbers or say "(being built)"."""
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in [*DOCS, *CODE]
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if ISSUE.search(line)
    ]
    assert found == []


def test_the_checks_see_what_they_refuse(tmp_path: Path) -> None:
    """A doc naming a missing path, a count and an issue number is caught by each check."""
    doc = tmp_path / "probe.md"
    doc.write_text("See `worker/nope.py` and `README.md`; the seven events (issue 12).")
    assert named_paths(doc) == ["worker/nope.py", "README.md"]
    assert not _exists(doc, "worker/nope.py")
    assert not _exists(doc, "nope_at_all.py", tmp_path)
    assert COUNT.findall(doc.read_text())
    assert ISSUE.search(doc.read_text())
