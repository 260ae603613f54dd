"""Look-alikes of the webhooks' sources (issue 23): a leading space, a zero-width space, a NUL,
fullwidth letters. Each used to be accepted on `/events` and shown as if a verified webhook sent
it; each is now refused with a 400 that says what it reads as, and nothing is enqueued."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from handlers import examples as factories
from tests.ingress_support import (
    RunningIngress,
    ingress_settings,
    post_structured,
    queued_events,
    running_ingress,
)
from tests.servers import RedisServer
from worker.ingress.sources import is_reserved, normalized

LOOKALIKES = [
    " urn:subaccount-worker:stripe",
    "urn:subaccount-worker:stripe\t",
    "urn:subaccount-worker\u200b:stripe",
    "urn:\u2060subaccount-worker:crm",
    "urn:subaccount-worker\x00:stripe",
    "\ufeffurn:subaccount-worker:crm",
    "\uff55\uff52\uff4e:subaccount-worker:stripe",  # fullwidth "urn"
    "urn:subaccount\u2011worker:stripe",  # a non-breaking hyphen: every dash reads as "-"
]


@pytest.fixture(scope="module")
def ingress(redis_server: RedisServer) -> Iterator[RunningIngress]:
    with running_ingress(ingress_settings(redis_server.url)) as app:
        yield app


@pytest.mark.parametrize("source", LOOKALIKES)
def test_a_lookalike_source_is_refused_with_what_it_reads_as(
    ingress: RunningIngress, redis_client: redis.Redis, source: str
) -> None:
    event = {**factories.invoice_paid("C1", "INV-9", 500), "source": source, "id": "evt_x"}
    answer = post_structured(ingress.http, event)
    assert answer.status_code == 400, answer.text
    reason = answer.json()["reasons"][0]
    assert "reserved for the ingress's verified webhooks" in reason
    assert "it reads as 'urn:subaccount-worker:" in reason
    assert queued_events(redis_client, ingress.settings) == []


def test_ordinary_sources_are_untouched() -> None:
    for source in ("urn:stripe", "https://crm.example/hooks", "urn:acme:billing"):
        assert not is_reserved(source)
        assert normalized(source) == source
