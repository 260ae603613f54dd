"""The tree keeps its promises: imports run one way between the rooms (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(folder: str) -> dict[str, set[str]]:
    """Each module file under `folder` and the absolute module names it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(ROOT))] = names
    return found


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path} imports {name}"
        for path, names in imported_modules(folder).items()
        for name in sorted(names)
        if name.startswith(forbidden)
    ]


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        # decisions are pure: the I/O side depends on them, never the other way
        ("handlers", ("worker",)),
        # the per-event engine reports to operators' code through observers only
        ("worker/pipeline", ("worker.ops", "worker.credits", "worker.console", "worker.cli")),
    ],
)
def test_imports_run_one_way(folder: str, forbidden: tuple[str, ...]) -> None:
    """No module of `folder` imports a module under `forbidden`."""
    assert offenders(folder, forbidden) == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The scanner finds both import forms (so the test above could fail)."""
    module = ROOT / "handlers" / "_probe_for_architecture_test.py"
    module.write_text("import worker.keys\nfrom worker.errors import ConfigError\n")
    try:
        found = offenders("handlers", ("worker",))
    finally:
        module.unlink()
    assert "handlers/_probe_for_architecture_test.py imports worker.keys" in found
    assert any("worker.errors" in line for line in found)
