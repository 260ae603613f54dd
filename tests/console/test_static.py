"""The vendored htmx is the file VENDORED.md names, and the static files are served with the
same security headers as the pages."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx

import worker.console

STATIC = Path(worker.console.__file__).parent / "static"


def test_vendored_htmx_matches_its_recorded_hash_and_version() -> None:
    notes = (STATIC / "VENDORED.md").read_text()
    recorded = re.search(r"`htmx\.min\.js` \|[^|]+\| (2\.0\.\d+) \| `([0-9a-f]{64})`", notes)
    assert recorded, "VENDORED.md has no htmx row"
    body = (STATIC / "htmx.min.js").read_bytes()
    assert hashlib.sha256(body).hexdigest() == recorded.group(2)
    assert f'version:"{recorded.group(1)}"' in body.decode()
    assert "Zero-Clause BSD" in (STATIC / "htmx-LICENSE.txt").read_text()


def test_static_files_are_served_without_login(anonymous: httpx.Client) -> None:
    for name in ["htmx.min.js", "console.js", "console.css"]:
        answer = anonymous.get(f"/static/{name}")
        assert answer.status_code == 200, name
        assert "content-security-policy" in answer.headers
