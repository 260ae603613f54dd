"""The tree keeps its promises: imports run one way between the rooms (docs/architecture.md).

The rules are one table (`RULES`): a room must not reach a forbidden room through any chain of
imports of our own modules (checked transitively), whether the import sits at the top of a module
or inside a function. Tests may import helper modules but never another test module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("worker", "handlers")

# room → rooms it must never reach (a room is a package prefix; `worker` alone is every room)
RULES: dict[str, tuple[str, ...]] = {
    # decisions are pure: the I/O side depends on them, never the other way
    "handlers": ("worker",),
    # the per-event engine reports to operators' code through observers only
    "worker.pipeline": (
        "worker.ops", "worker.credits", "worker.console", "worker.cli", "worker.app",
    ),
    # operators' services serve both front ends and know neither
    "worker.ops": ("worker.console", "worker.cli"),
    # the API client is a boundary below the engine
    "worker.api": ("worker.pipeline", "worker.ops", "worker.credits", "worker.console"),
    # the sandbox validates with its own rules: a fake sharing the client's validators or the
    # engine's types could not catch their bugs, so it imports nothing of ours outside itself
    "worker.sandbox": ("worker", "handlers"),
}  # fmt: skip
# Only these may import the dev helpers (the demo and the local servers).
DEV = "worker.dev"
DEV_USERS = ("worker.cli", "worker.dev")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(folder: str, root: Path = ROOT) -> dict[str, set[str]]:
    """Each module file under `folder` and the absolute module names it imports (anywhere in it)."""
    found: dict[str, set[str]] = {}
    for path in sorted((root / folder).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(root))] = names
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Our module → our modules it imports (names resolved to modules that exist)."""
    modules: dict[str, set[str]] = {}
    for folder in OURS:
        for rel, names in imported_modules(folder, root).items():
            modules[module_name(root / rel, root)] = names
    return {
        mod: {_resolve(name, modules) for name in names if name.startswith(OURS)} - {""}
        for mod, names in modules.items()
    }


def _resolve(name: str, modules: Iterable[str]) -> str:
    """`worker.log.get_logger` → `worker.log`: the longest prefix that is a module of ours."""
    known = set(modules)
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def _in(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


def _room(module: str) -> str:
    """The most specific room of RULES that holds `module` (itself if none)."""
    rooms = [room for room in RULES if _in(module, room)]
    return max(rooms, key=len) if rooms else module


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every (module, forbidden module) reachable by a chain of imports, with the chain."""
    found: list[str] = []
    for module in sorted(graph):
        rules = [f for room, forbidden in RULES.items() if _in(module, room) for f in forbidden]
        if not _in(module, DEV_USERS[0]) and not _in(module, DEV_USERS[1]):
            rules.append(DEV)
        if not rules:
            continue
        own = _room(module)
        for target, chain in _reachable(graph, module).items():
            if not _in(target, own) and any(_in(target, f) for f in rules):
                found.append(" -> ".join(chain))
    return found


def _reachable(graph: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """Every module reachable from `start`, with one shortest chain to it."""
    chains = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for module in frontier:
            for target in sorted(graph.get(module, ())):
                if target not in chains:
                    chains[target] = [*chains[module], target]
                    nxt.append(target)
        frontier = nxt
    del chains[start]
    return chains


def test_imports_run_one_way() -> None:
    """No room reaches a room the table forbids it, directly or through other modules."""
    assert violations(import_graph()) == []


def test_the_check_sees_a_forbidden_import_through_a_chain(tmp_path: Path) -> None:
    """A probe tree under tmp_path: handlers → worker.x (direct) and pipeline → a → ops
    (transitive) are both found, in both import forms (so the test above could fail)."""
    files = {
        "handlers/__init__.py": "",
        "handlers/probe.py": "from worker.keys import x\n",
        "worker/__init__.py": "",
        "worker/keys.py": "",
        "worker/middle.py": "def f():\n    import worker.ops.status\n",
        "worker/pipeline/__init__.py": "",
        "worker/pipeline/engine.py": "from worker import middle\n",
        "worker/ops/__init__.py": "",
        "worker/ops/status.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = violations(import_graph(tmp_path))
    assert "handlers.probe -> worker.keys" in found
    assert "worker.pipeline.engine -> worker.middle -> worker.ops.status" in found


@pytest.mark.parametrize("layer", ["unit", "integration", "e2e", "console"])
def test_no_test_module_imports_another(layer: str) -> None:
    """Shared helpers live in *_support.py / servers.py / conftest.py, not in test modules."""
    offenders = [
        f"{path} imports {name}"
        for path, names in imported_modules(f"tests/{layer}").items()
        for name in sorted(names)
        if (name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_"))
        or ".test_" in name
    ]
    assert offenders == []
