"""Integration fixtures: the whole pipeline in-process on the test-owned Redis and sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import TEST_API_KEY
from tests.pipeline_support import pipeline_settings, running_pipeline
from tests.servers import ThreadedUvicorn
from worker.runtime import Runtime
from worker.sandbox import SandboxAdmin


@pytest.fixture
def pipeline(
    redis_url: str, sandbox: SandboxAdmin, sandbox_server: ThreadedUvicorn
) -> Iterator[Runtime]:
    """A Dramatiq worker (4 threads) running our actor against the sandbox's v6 surface."""
    settings = pipeline_settings(redis_url, f"{sandbox_server.url}/v6", TEST_API_KEY)
    with running_pipeline(settings) as runtime:
        yield runtime
