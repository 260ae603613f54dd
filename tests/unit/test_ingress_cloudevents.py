"""CloudEvents modes, strict JSON and reason renaming of the ingress, without a server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.datastructures import Headers

from handlers import examples as factories
from worker.ingress.body import parse_json
from worker.ingress.cloudevents import BATCH, BINARY, STRUCTURED, parse_request
from worker.ingress.mapping import rename
from worker.ingress.problems import Malformed

NO_HEADERS = Headers({})


def reasons_of(media: str, body: Any, headers: Headers = NO_HEADERS) -> list[str]:
    """The reasons `parse_request` refuses `body` with."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(Malformed) as caught:
        parse_request(media, headers, raw)
    return caught.value.reasons


def test_structured_event_keeps_its_extensions() -> None:
    """A structured event with CloudEvents-shaped extensions parses, extensions kept."""
    event = {**factories.suspended("C1"), "traceparent": "00-abc-01", "retries": 3, "test": True}
    [parsed] = parse_request(STRUCTURED, NO_HEADERS, json.dumps(event).encode())
    message = parsed.to_message()
    assert (message["traceparent"], message["retries"], message["test"]) == ("00-abc-01", 3, True)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"data_base64": "eyJ9"}, "data_base64: not supported; send the data as JSON in `data`"),
        (
            {"Trace": "x"},
            "'Trace': not a CloudEvents attribute name (1-20 lowercase letters or digits)",
        ),
        (
            {"nested": {"a": 1}},
            "nested: an extension attribute is a string, a 32-bit integer or a boolean",
        ),
        ({"big": 2**31}, "big: an extension attribute is a string, a 32-bit integer or a boolean"),
        (
            {"ratio": 0.5},
            "ratio: an extension attribute is a string, a 32-bit integer or a boolean",
        ),
    ],
)
def test_extensions_must_be_cloudevents_shaped(extra: dict[str, Any], reason: str) -> None:
    """Extension names are lowercase alphanumerics and values primitives; data_base64 is refused."""
    assert reasons_of(STRUCTURED, {**factories.suspended("C1"), **extra}) == [reason]


def test_batch_reasons_carry_the_index_of_each_bad_event() -> None:
    """Every bad event of a batch is named by its index; good ones are not mentioned."""
    batch: list[Any] = [factories.suspended("C1"), [], factories.onboarded("C2", email="x"), None]
    found = reasons_of(BATCH, batch)
    assert [r.split(" ")[0] for r in found] == ["[1]", "[2]", "[3]"]
    assert found[1].startswith("[2] data.email:")


def test_batch_must_be_an_array() -> None:
    """A batch body that is an object is refused."""
    assert reasons_of(BATCH, factories.suspended("C1")) == [
        "body: a batch must be a JSON array of events"
    ]


def test_empty_batch_is_no_events() -> None:
    """An empty batch is valid and holds no events."""
    assert parse_request(BATCH, NO_HEADERS, b"[]") == []


def test_binary_mode_reads_percent_encoded_headers_and_body_data() -> None:
    """Binary mode: attributes from ce-* headers (percent-decoded), data from the body."""
    headers = Headers(
        {
            "ce-specversion": "1.0",
            "ce-id": "id%201",
            "ce-source": "urn:billing",
            "ce-type": "client.suspended",
            "ce-subject": "C1",
            "ce-time": "2026-01-01T00:00:00Z",
            "ce-region": "eu%2Dwest",
        }
    )
    [event] = parse_request(BINARY, headers, b'{"reason": "unpaid"}')
    message = event.to_message()
    assert (message["id"], message["region"]) == ("id 1", "eu-west")
    assert message["data"] == {"reason": "unpaid"}
    assert message["datacontenttype"] == "application/json"


def test_binary_mode_without_specversion_explains_the_modes() -> None:
    """Plain JSON without ce-specversion is refused, pointing at structured mode."""
    [reason] = reasons_of(BINARY, factories.suspended("C1"))
    assert reason.startswith("ce-specversion: required in binary mode")


def test_binary_mode_header_must_be_utf8_once_decoded() -> None:
    """A ce-* value whose percent-escapes are not UTF-8 is refused naming the header."""
    headers = Headers({"ce-specversion": "1.0", "ce-id": "%ff"})
    assert reasons_of(BINARY, b"{}", headers) == ["ce-id: not UTF-8 once percent-decoded"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "body: not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "body: JSON nested too deeply"),
        (b'{"a": NaN}', "body: not valid JSON (NaN is not JSON)"),
        (b'{"a": 1e999}', "body: not valid JSON (number 1e999 is out of range)"),
        (b"", "body: not valid JSON (Expecting value: line 1 column 1 (char 0))"),
    ],
)
def test_json_is_strict(body: bytes, reason: str) -> None:
    """Bodies that are not strict UTF-8 JSON of sane depth are refused with a reason."""
    with pytest.raises(Malformed) as caught:
        parse_json(body)
    assert caught.value.reasons == [reason]


def test_json_with_an_enormous_integer_is_refused() -> None:
    """Python's cap on integer digits becomes a 400, not an error."""
    with pytest.raises(Malformed) as caught:
        parse_json(b"1" * 5000)
    assert caught.value.reasons[0].startswith("body: not valid JSON (Exceeds the limit")


@pytest.mark.parametrize(
    ("reason", "renamed"),
    [
        ("subject: too long", "client_id: too long"),
        ("time: bad", "occurred_at: bad"),
        ("data.email: bad", "data.email: bad"),
        ("timestamp: unrelated", "timestamp: unrelated"),  # a prefix match must end at a dot
        ("data.recurring.amount: negative", "metadata.amount: negative"),
    ],
)
def test_rename_rewrites_the_field_path_only(reason: str, renamed: str) -> None:
    """Renaming rewrites the longest matching field prefix and leaves the message alone."""
    renames = {"subject": "client_id", "time": "occurred_at", "data.recurring": "metadata"}
    assert rename(reason, renames) == renamed
