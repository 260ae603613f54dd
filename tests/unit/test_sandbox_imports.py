"""The sandbox validates with its own rules: it imports nothing of the project outside itself.

A fake that shared the client's validators (`worker.api`) or the engine's types could not catch
their bugs, so `worker/sandbox/**` may import the standard library, third-party packages and
`worker.sandbox` only. Checked by parsing the source, as an architecture test.
"""

from __future__ import annotations

import ast
from pathlib import Path

SANDBOX = Path(__file__).resolve().parents[2] / "worker" / "sandbox"
FIRST_PARTY = ("worker", "handlers")


def _imported_modules(path: Path) -> list[str]:
    """Absolute module names `path` imports (relative imports stay inside the package)."""
    modules: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.append(node.module)
    return modules


def _outside_the_sandbox(module: str) -> bool:
    top = module.split(".")[0]
    return top in FIRST_PARTY and not (module + ".").startswith("worker.sandbox.")


def test_the_sandbox_imports_nothing_of_the_project_outside_itself() -> None:
    """No module under worker/sandbox imports worker.api, worker.pipeline, handlers or the like."""
    sources = sorted(SANDBOX.rglob("*.py"))
    assert len(sources) > 10  # the walk found the package
    offending = [
        f"{path.relative_to(SANDBOX.parents[1])}: {module}"
        for path in sources
        for module in _imported_modules(path)
        if _outside_the_sandbox(module)
    ]
    assert offending == []


def test_the_check_sees_forbidden_imports(tmp_path: Path) -> None:
    """The parser catches both import forms and ignores relative and third-party imports."""
    source = tmp_path / "example.py"
    source.write_text(
        "import handlers.plan\nfrom worker.api.models import CreditType\n"
        "from worker.sandbox import fields\nfrom . import sibling\nimport pydantic\n"
    )
    flagged = [m for m in _imported_modules(source) if _outside_the_sandbox(m)]
    assert flagged == ["handlers.plan", "worker.api.models"]
