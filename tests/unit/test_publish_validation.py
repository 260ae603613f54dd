"""Publishing validates every event of a batch before anything is written."""

from __future__ import annotations

import pytest

from handlers import examples as f
from handlers.errors import InvalidEvent
from worker.pipeline.publish import validate_all


def test_batch_reasons_name_each_bad_event_by_index() -> None:
    """Each invalid event of a batch is named by its index and field."""
    bad_email = f.onboarded("a", email="nope")
    with pytest.raises(InvalidEvent) as caught:
        validate_all([f.onboarded("b"), bad_email, [1]])  # type: ignore[list-item]
    reasons = caught.value.reasons
    assert any(r.startswith("[1] data.email") for r in reasons)
    assert any(r.startswith("[2] event") for r in reasons)
    assert not any(r.startswith("[0]") for r in reasons)
