"""Robustness: hundreds of malformed, oversized, mistyped and forged requests, none gets a 5xx.

Requests are generated from fixed seeds, so a failure reproduces. Mutated events are signed
correctly, so they get past authentication and exercise parsing and mapping; forgeries are not.
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from handlers import examples as factories
from tests.ingress_support import (
    BATCH,
    JSON,
    STRUCTURED,
    TOKEN,
    RunningIngress,
    bearer,
    crm_body,
    crm_headers,
    ingress_settings,
    invoice,
    queued_events,
    running_ingress,
    stripe_event,
    stripe_headers,
    subscription,
)
from tests.servers import RedisServer

LIMIT = 8192
ROUTES = ("/events", "/webhooks/stripe", "/webhooks/crm")


@dataclass
class Case:
    """One generated request and the statuses it may get (None: any but a 5xx)."""

    kind: str
    path: str
    body: bytes
    headers: dict[str, str | bytes] = field(default_factory=dict)
    method: str = "POST"
    expect: frozenset[int] | None = None
    names: str | None = None  # a field a refusal's reasons must name


def templates() -> list[tuple[str, Any]]:
    """Valid bodies of every route and mode, to be mutated."""
    now = int(time.time())
    plan = subscription("C1", "week", credit_type="unlimited", recurring_credits="5")
    return [
        ("/events", factories.onboarded("C1", recurring={"amount": 5, "period": "daily"})),
        ("/events", [factories.updated("C1", email="a@example.com"), factories.suspended("C2")]),
        ("binary", factories.plan_changed("C1", credit_type="unlimited")),
        (
            "/webhooks/stripe",
            stripe_event("invoice.paid", invoice(lines=(("price_basic", 2),)), created=now),
        ),
        ("/webhooks/stripe", stripe_event("customer.subscription.updated", plan, created=now)),
        (
            "/webhooks/crm",
            crm_body("client.onboarded", "C1", {"email": "a@b.co", "credit_type": "unlimited"}),
        ),
    ]


def weird_value(rng: random.Random) -> Any:
    """A value of a random, usually wrong, type or shape."""
    choices: list[Callable[[], Any]] = [
        lambda: None,
        lambda: rng.choice([True, False]),
        lambda: rng.randint(-(2**40), 2**40),
        lambda: 10 ** rng.randint(9, 60),
        lambda: rng.choice([0, -1, 2**31, 2**63]),
        lambda: rng.random() * rng.choice([1, 1e300, -1e-300]),
        lambda: "",
        lambda: rng.choice(["\ud800", "\x00", "é", "🦄", "\u202e", " ", "null", "0x1f"]),
        lambda: "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(1, 40))),
        lambda: "x" * rng.randint(150, 3000),
        lambda: rng.choice(
            ["2026-13-45T99:99:99Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59"]
        ),
        lambda: [weird_scalar(rng) for _ in range(rng.randint(0, 5))],
        lambda: {f"k{i}": weird_scalar(rng) for i in range(rng.randint(0, 5))},
        lambda: nested(rng.randint(20, 400)),
    ]
    return rng.choice(choices)()


def weird_scalar(rng: random.Random) -> Any:
    return rng.choice([None, 1, -1, "s", 1.5, True, [], {}])


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def slots(doc: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) in a JSON document, depth first."""
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    )
    for key, value in list(items):
        yield doc, key
        yield from slots(value)


def mutate(rng: random.Random, doc: Any) -> Any:
    """`doc` with one to three random slots replaced by weird values or deleted."""
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        places = list(slots(doc))
        if not places or rng.random() < 0.05:
            return weird_value(rng)
        container, key = rng.choice(places)
        if isinstance(container, dict) and rng.random() < 0.25:
            del container[key]
        else:
            container[key] = weird_value(rng)
    return doc


def signed(path: str, body: bytes, rng: random.Random) -> dict[str, str | bytes]:
    """Correct credentials for `path` and `body` (content type included)."""
    if path == "/webhooks/stripe":
        return dict(stripe_headers(body))
    if path == "/webhooks/crm":
        return dict(crm_headers(body, webhook_id=f"msg_{rng.randint(0, 10**9)}"))
    return {**bearer(), "content-type": STRUCTURED}


def mutated_case(rng: random.Random) -> Case:
    """A correctly signed request whose JSON body is a mutated valid one (may stay valid)."""
    route, template = rng.choice(templates())
    doc = mutate(rng, template)
    if route == "binary":
        return binary_case(rng, doc)
    body = json.dumps(doc).encode()
    headers = signed(route, body, rng)
    if route == "/events" and isinstance(template, list):
        headers["content-type"] = BATCH
    return Case("mutated", route, body, headers)


def binary_case(rng: random.Random, doc: Any) -> Case:
    """A binary-mode request built from a (mutated) event: attributes become ce-* headers."""
    headers: dict[str, str | bytes] = {**bearer(), "content-type": JSON}
    attributes = doc if isinstance(doc, dict) else {}
    for name, value in attributes.items():
        if name != "data":
            text = value if isinstance(value, str) else json.dumps(value)
            headers[f"ce-{name}"[:40]] = header_value(text.encode("utf-8", "replace")[:200])
    body = json.dumps(attributes.get("data", doc)).encode()
    return Case("binary", "/events", body, headers)


def header_value(raw: bytes) -> bytes:
    """`raw` made sendable as an HTTP header value: no control characters, no outer spaces."""
    value = bytes(b for b in raw if b >= 0x20 and b != 0x7F).strip(b" \t")
    return value or b"x"


def flip_last(value: str) -> str:
    """`value` with its last character changed (a signature or token off by one character)."""
    return value[:-1] + ("1" if value.endswith("0") else "0")


def garbage_case(rng: random.Random) -> Case:
    """Correctly signed bytes that are not JSON, or JSON cut short."""
    path = rng.choice(ROUTES)
    if rng.random() < 0.5:
        body = bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 300)))
    else:
        text = json.dumps(rng.choice(templates())[1]).encode()
        body = text[: rng.randint(1, len(text) - 1)]
    return Case("garbage", path, body, signed(path, body, rng), expect=frozenset({400}))


def forged_case(rng: random.Random) -> Case:
    """A valid body with credentials that are wrong in a random way."""
    path, template = rng.choice([t for t in templates() if t[0] in ROUTES])
    body = json.dumps(template).encode()
    headers = signed(path, body, rng)
    name = {"/events": "authorization", "/webhooks/stripe": "stripe-signature"}.get(
        path, "webhook-signature"
    )
    forgeries: list[Callable[[], object]] = [
        lambda: headers.pop(name),
        lambda: headers.__setitem__(
            name, header_value(bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 90))))
        ),
        lambda: headers.__setitem__(name, flip_last(str(headers[name]))),
        lambda: headers.__setitem__(name, f"t={int(time.time())},v1={rng.getrandbits(256):064x}"),
        lambda: headers.__setitem__(name, f"Bearer {TOKEN[:-1]}"),
    ]
    rng.choice(forgeries)()
    tampered = body.replace(b'"C1"', b'"C2"') if rng.random() < 0.3 else body
    return Case("forged", path, tampered, headers, expect=frozenset({401}))


def oversized_case(rng: random.Random) -> Case:
    """A correctly signed body larger than the limit."""
    path = rng.choice(ROUTES)
    body = b"[" + b"0," * rng.randint(LIMIT // 2, LIMIT * 2) + b"0]"
    return Case("oversized", path, body, signed(path, body, rng), expect=frozenset({413}))


def content_type_case(rng: random.Random) -> Case:
    """A correctly signed body with a content type the route does not read."""
    path = rng.choice(ROUTES)
    body = json.dumps(rng.choice(templates())[1]).encode()
    headers = signed(path, body, rng)
    headers["content-type"] = rng.choice(
        ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "", "json",
         "application/json; charset=utf-16", "application/cloudevents+xml"]
    )  # fmt: skip
    if path != "/events" and headers["content-type"] == "":
        del headers["content-type"]
    return Case("content-type", path, body, headers, expect=frozenset({415}))


# Values JSON means otherwise than the catalogue's strict types, by the kind of field they replace.
LOOSE = {
    "int": [True, False, "100", 100.0, " 100 ", "1e2", 10**12],  # 10**12: over the cap
    "date": [0, 20260201, "2026-02-01T00:00:00Z", "02/01/2026", True],
    "bool": ["true", 1, 0, "false", None],
}
LOOSE_FIELDS = [("credits",), ("recurring", "amount"), ("recurring", "start_date"),
                ("recurring", "active")]  # fmt: skip
KINDS = {"credits": "int", "amount": "int", "start_date": "date", "active": "bool"}


def loose_case(rng: random.Random) -> Case:
    """A correctly signed onboarding (/events or CRM) with one value of a loose type: 400."""
    data = {
        "email": "a@example.com",
        "credit_type": "unlimited",
        "credits": 10,
        "recurring": {"amount": 5, "period": "daily", "start_date": "2026-02-01", "active": True},
    }
    path = rng.choice(LOOSE_FIELDS)
    holder: dict[str, Any] = data
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = rng.choice(LOOSE[KINDS[path[-1]]])
    route = rng.choice(["/events", "/webhooks/crm"])
    doc = factories.event("client.onboarded", "C1", data)
    if route == "/webhooks/crm":
        doc = crm_body("client.onboarded", "C1", data)
    body = json.dumps(doc).encode()
    names = "data." + ".".join(path)
    headers = signed(route, body, rng)
    return Case("loose", route, body, headers, expect=frozenset({400}), names=names)


def stray_case(rng: random.Random) -> Case:
    """A request to a path or with a method the ingress does not serve."""
    path = rng.choice([*ROUTES, "/", "/events/1", "/webhooks", "/%00", "/" + "a" * 500])
    method = rng.choice(["GET", "PUT", "DELETE", "PATCH"]) if path in ROUTES else "POST"
    expect = frozenset({404, 405})
    return Case("stray", path, b"{}", {"content-type": JSON}, method=method, expect=expect)


GENERATORS: list[tuple[Callable[[random.Random], Case], int]] = [
    (mutated_case, 10),
    (garbage_case, 3),
    (forged_case, 3),
    (oversized_case, 1),
    (content_type_case, 1),
    (stray_case, 1),
    (loose_case, 2),
]


def generate(seed: int, count: int) -> list[Case]:
    """`count` cases drawn with weights from every generator, reproducibly from `seed`."""
    rng = random.Random(seed)
    makers = [maker for maker, weight in GENERATORS for _ in range(weight)]
    return [rng.choice(makers)(rng) for _ in range(count)]


@pytest.fixture(scope="module")
def fuzz_ingress(redis_server: RedisServer) -> Iterator[RunningIngress]:
    with running_ingress(ingress_settings(redis_server.url, ingress_max_body_bytes=LIMIT)) as app:
        yield app


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzzed_requests_never_get_a_5xx(
    fuzz_ingress: RunningIngress, redis_client: redis.Redis, seed: int
) -> None:
    """Each request is refused with the right 4xx and reasons (or accepted and really enqueued)."""
    statuses: Counter[tuple[str, int]] = Counter()
    enqueued = 0
    for case in generate(seed, 150):
        headers = [
            (k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in case.headers.items()
        ]
        response = fuzz_ingress.http.request(
            case.method, case.path, content=case.body, headers=headers
        )
        statuses[case.kind, response.status_code] += 1
        assert response.status_code < 500, (case, response.text)
        assert case.expect is None or response.status_code in case.expect, (case, response.text)
        body = response.json()
        if response.status_code >= 400:
            assert body["error"], case
            assert body["reasons"], case
            assert case.names is None or any(
                r.startswith(case.names + ":") for r in body["reasons"]
            ), (case, body)
        else:
            enqueued += len(body["accepted"])
    assert len(queued_events(redis_client, fuzz_ingress.settings)) == enqueued
    refused = sum(n for (_, status), n in statuses.items() if status >= 400)
    assert refused >= 100, statuses
    assert fuzz_ingress.http.get("/healthz").status_code == 200
    assert fuzz_ingress.http.get("/readyz").status_code == 200
