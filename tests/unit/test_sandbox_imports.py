"""The sandbox validates with its own rules: it imports nothing of the project outside itself.

A fake that shared the client's validators (`worker.api`) or the engine's types could not catch
their bugs, so `worker/sandbox/**` may import the standard library, third-party packages and
`worker.sandbox` only (not `worker.api`, `worker.pipeline`, `handlers` or any other room).
"""

from __future__ import annotations

from tests.unit.test_architecture import imported_modules

FIRST_PARTY = ("worker", "handlers")


def outside_the_sandbox(module: str) -> bool:
    """Whether `module` is the project's own and not part of the sandbox."""
    return module.split(".")[0] in FIRST_PARTY and not f"{module}.".startswith("worker.sandbox.")


def test_the_sandbox_imports_nothing_of_the_project_outside_itself() -> None:
    """No module under worker/sandbox imports worker.api, worker.pipeline, handlers or the like."""
    found = imported_modules("worker/sandbox")
    assert len(found) > 10  # the walk found the package
    offending = [
        f"{path} imports {name}"
        for path, names in found.items()
        for name in sorted(names)
        if outside_the_sandbox(name)
    ]
    assert offending == []


def test_the_rule_tells_the_sandbox_from_the_rest() -> None:
    """The project's other rooms are outside; the sandbox itself and third parties are not."""
    outside = ["worker.api.models", "worker.pipeline", "handlers.plan", "worker", "worker.settings"]
    inside = ["worker.sandbox", "worker.sandbox.fields", "pydantic", "workers", "handlers_x.y"]
    assert [outside_the_sandbox(name) for name in outside] == [True] * len(outside)
    assert [outside_the_sandbox(name) for name in inside] == [False] * len(inside)
