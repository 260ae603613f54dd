"""The probe of issue 23, re-run: each attack on a console served by uvicorn on loopback, over a
private redis-server, with whatever code is first on the path. Prints one line per attack with
what the console answered, then the login-limit figures.

    python -m bench.security_probe                      # this checkout
    PYTHONPATH=/path/to/old/checkout python -m bench.security_probe   # the code before

Loopback only: the console, its Redis and the attacker all run here. Not a test (it takes a
minute): the tests of each fix are named in docs and the closing note.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import redis
import uvicorn

from worker.console import create_app
from worker.dev.devservers import RedisServer, free_port, wait_until
from worker.log import configure_logging
from worker.settings import load_settings

TOKEN = "ad-2d9e4470aa3f4c1b9e0d7a6c5b8f3e21"  # noqa: S105 - a loopback-only fixture
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


@contextmanager
def console(redis_url: str, **settings: Any) -> Iterator[str]:
    """A console with `settings`, served by uvicorn without its own proxy handling."""
    values: dict[str, Any] = {"redis_url": redis_url, "console_secret": "k" * 32, **settings}
    app = create_app(load_settings(**values))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                            lifespan="off", proxy_headers=False)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="console")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.services.close()


def forged_header(redis_url: str) -> str:
    with console(redis_url, console_trusted_user_header="X-Forwarded-User",
                 console_trusted_roles="boss:admin", console_trusted_proxies="10.0.0.0/8",
                 console_tokens=f"ada:admin:{TOKEN}") as url:  # fmt: skip
        answer = httpx.get(f"{url}/api/status", headers={"X-Forwarded-User": "boss"})
        return (
            f"GET /api/status with X-Forwarded-User: boss from a non-proxy -> {answer.status_code}"
        )


def rebinding(redis_url: str) -> str:
    with console(redis_url, console_tokens=f"ada:admin:{TOKEN}") as url:
        bearer = {"Authorization": f"Bearer {TOKEN}", "Host": "evil.example"}
        answer = httpx.get(f"{url}/api/status", headers=bearer)
        return f"GET /api/status with Host: evil.example -> {answer.status_code}"


def brute_force(redis_url: str, path: str, seconds: float) -> str:
    """Wrong credentials as fast as one client sends them, for `seconds`: answers by code."""
    with console(redis_url, console_tokens=f"ada:admin:{TOKEN}") as url, httpx.Client() as http:
        codes: dict[int, int] = {}
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            n += 1
            if path == "/login":
                data = {"user": "ada", "token": f"guess-{n}"}
                answer = http.post(f"{url}/login", data=data, headers=SAME_ORIGIN)
            else:
                answer = http.get(f"{url}{path}", headers={"Authorization": f"Bearer g-{n}"})
            codes[answer.status_code] = codes.get(answer.status_code, 0) + 1
        checked = codes.get(401, 0)
        return f"{path}: {n} wrong tries in {seconds:.0f} s; answers {codes}; checked: {checked}"


def copied_cookie(redis_url: str) -> str:
    with console(redis_url, console_tokens=f"ada:admin:{TOKEN}") as url, httpx.Client() as http:
        http.post(f"{url}/login", data={"user": "ada", "token": TOKEN}, headers=SAME_ORIGIN)
        stolen = dict(http.cookies)
        http.post(f"{url}/logout", headers=SAME_ORIGIN)
        answer = httpx.get(f"{url}/api/status", cookies=stolen)
        return f"GET /api/status with the cookie copied before logout -> {answer.status_code}"


def unknown_job(redis_url: str) -> str:
    with console(redis_url, console_tokens=f"ada:admin:{TOKEN}") as url, httpx.Client() as http:
        http.post(f"{url}/login", data={"user": "ada", "token": TOKEN}, headers=SAME_ORIGIN)
        try:
            with http.stream("GET", f"{url}/live/jobs/nope") as answer:
                kind = answer.headers.get("content-type", "").split(";")[0]
                status = answer.status_code
                body = answer.read().decode(errors="replace")
        except httpx.HTTPError as exc:
            return f"GET /live/jobs/nope -> {status} {kind}, then cut ({type(exc).__name__})"
        return f"GET /live/jobs/nope -> {status} {kind} ({len(body)} bytes)"


def attacker_budget() -> list[str]:
    """Wrong logins an attacker gets for one user (or from one address), trying again the
    moment each wait ends: the throttle's own delay function, as the console applies it."""
    settings = load_settings()
    free, cap = settings.console_login_free_attempts, settings.console_login_max_delay_s
    from worker.console.throttle import delay_s as delay

    lines = []
    for horizon, label in ((60, "first minute"), (3600, "first hour"), (86_400, "first day")):
        t, n = 0.0, 0
        while True:
            n += 1
            t += delay(n, free, float(cap))
            if t > horizon:
                break
        lines.append(f"{label}: {n} attempts")
    return lines


def main() -> None:
    configure_logging(load_settings(log_level="ERROR"))
    server = RedisServer().start()
    try:
        url = server.url
        probes: list[Callable[[str], str]] = [forged_header, rebinding, copied_cookie, unknown_job]
        probes += [lambda u: brute_force(u, "/login", 10.0)]
        probes += [lambda u: brute_force(u, "/api/status", 10.0)]
        for probe in probes:
            redis.Redis.from_url(url).flushdb()  # each attack starts with no failures counted
            print(probe(url), flush=True)
    finally:
        server.cleanup()
    if importlib.util.find_spec("worker.console.throttle") is not None:
        print("attempts one attacker gets per user or address:", "; ".join(attacker_budget()))


if __name__ == "__main__":
    main()
