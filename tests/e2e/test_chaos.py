"""The small chaos run (`python -m bench.chaos --small`): kills, a Redis restart, an API pause and
a flaky, rate-limited API that sends mail, applies some calls after the client gave up and is
topped up out of band, judged against the oracle's in-order fold."""

from __future__ import annotations

import pytest

from bench.chaos import ChaosConfig, execute


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_small_chaos_run_loses_doubles_and_guesses_nothing() -> None:
    """Every client ends as the oracle says; each grant applied once; no ambiguous outcome."""
    verdict = execute(ChaosConfig.small(seed=7))
    assert verdict.violations == []
    assert verdict.figures["kills"] == 1
    assert verdict.figures["redis_restarts"] == 1
    assert verdict.figures["api_pauses"] == 1
    assert verdict.figures["lost"] == verdict.figures["doubled"] == 0
    assert verdict.figures["ambiguous"] == 0
    assert verdict.figures.get("fault late", 0) > 0  # calls applied after the read timeout
    assert verdict.figures["top_ups"] > 0  # and credits moved out of band
    assert verdict.outcomes["applied"] > 0
