"""Reading a request: its media type, its raw body (bounded while streaming) and its JSON.

Signatures are computed over the raw bytes, so the body is read once, verified, then parsed once.
"""

from __future__ import annotations

import json
import math
from typing import Any

import anyio
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request

from worker.ingress.problems import Malformed, RequestTimeout, TooLarge, UnsupportedMediaType


def media_type(headers: Headers) -> str:
    """The lower-cased media type of Content-Type, without parameters ('' when absent)."""
    return headers.get("content-type", "").partition(";")[0].strip().lower()


def require_media_type(headers: Headers, accepted: tuple[str, ...]) -> str:
    """The request's media type if the route reads it (and any charset is UTF-8), else 415."""
    found = media_type(headers)
    if found not in accepted:
        shown = found or "none"
        raise UnsupportedMediaType([f"content-type: {shown!r} not accepted; send {accepted}"])
    for param in headers.get("content-type", "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            raise UnsupportedMediaType(["content-type: charset must be utf-8"])
    return found


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The raw body, refused with 413 as soon as it passes `limit` bytes (declared or streamed),
    and with 408 if it has not all arrived `timeout_s` after reading began."""
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and (len(declared) > 18 or int(declared) > limit):
        raise TooLarge([f"body: {declared} bytes declared, at most {limit} accepted"])
    body = bytearray()
    try:
        with anyio.fail_after(timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise TooLarge([f"body: more than {limit} bytes, at most {limit} accepted"])
    except ClientDisconnect:
        raise Malformed(["body: the client disconnected before sending all of it"]) from None
    except TimeoutError:
        got = f"{len(body)} of {declared} bytes" if declared else f"{len(body)} bytes"
        raise RequestTimeout([f"body: {got} received within {timeout_s:g} s"]) from None
    return bytes(body)


def parse_json(body: bytes, field: str = "body") -> Any:
    """Strict JSON (UTF-8, no NaN or Infinity, bounded nesting), or 400 naming `field`."""
    try:
        return json.loads(
            body.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float
        )
    except UnicodeDecodeError:
        raise Malformed([f"{field}: not UTF-8"]) from None
    except RecursionError:
        raise Malformed([f"{field}: JSON nested too deeply"]) from None
    except ValueError as exc:  # JSONDecodeError, and Python's limit on digits of an integer
        raise Malformed([f"{field}: not valid JSON ({exc})"]) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value
