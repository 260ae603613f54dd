"""`make demo`: the whole system on loopback, three clients' story through the real front doors.

A private Redis, the sandbox, the ingress and a worker start on free ports, logging to files in a
temporary directory. The story's chapters (`story`) send signed webhooks and act as operators;
each says what happened and checks it. Then, unless `ci`, the console stays up until Ctrl-C.
Every process started here is stopped on the way out, whatever the way out is.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType

import httpx
import redis
from rich.console import Console
from rich.text import Text

from worker.dev.demo import render
from worker.dev.demo.doors import DoorRefused, FrontDoors, Secrets
from worker.dev.demo.processes import (
    Ports,
    ProcessDied,
    Processes,
    demo_values,
    environment,
    settings_of,
)
from worker.dev.demo.scene import Check, Scene
from worker.dev.demo.story import CAST, CHAPTERS, ChapterFn
from worker.dev.demo.summary import summarize
from worker.dev.devservers import RedisServer
from worker.errors import SubaccountWorkerError
from worker.log import configure_logging
from worker.sandbox.client import SandboxAdmin, SandboxAdminError

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# What a chapter may run into when the system misbehaves: reported as a failed expectation.
STORY_ERRORS = (
    AssertionError,  # wait_until timed out
    DoorRefused,
    SandboxAdminError,
    SubaccountWorkerError,
    httpx.HTTPError,
    redis.RedisError,
)


def run(ci: bool = False) -> int:
    """Tell the story; 0 if every expectation held, 1 if not, 130 if interrupted during it."""
    out = render.console()
    logs = Path(tempfile.mkdtemp(prefix="saw-demo-"))
    began = time.monotonic()
    try:
        with _interruptible(), ExitStack() as stack:
            scene, procs, ports = _start(stack, logs, out)
            stack.callback(_ignore_interrupts)  # runs first on the way out: stop uninterrupted
            checks = tell(out, scene, CHAPTERS)
            render.verdict(out, checks, time.monotonic() - began, str(logs))
            if not ci:
                _console_until_interrupted(out, procs, scene, ports)
    except KeyboardInterrupt:
        out.print(Text(f"\ninterrupted: every process stopped; logs in {logs}", "yellow"))
        return 130
    except (ProcessDied, SubaccountWorkerError, AssertionError) as exc:
        out.print(Text(f"the demo could not start: {exc}; logs in {logs}", "bold red"))
        return 1
    if not ci:
        out.print(Text("every process stopped", "dim"))
    return 0 if all(c.ok for c in checks) else 1


def _start(stack: ExitStack, logs: Path, out: Console) -> tuple[Scene, Processes, Ports]:
    """Redis, sandbox, ingress and worker up and ready; the scene wired to them."""
    with out.status("starting Redis, the sandbox, the ingress, a worker and the monitor ..."):
        server = RedisServer("--logfile", str(logs / "redis.log")).start()
        stack.callback(server.cleanup)
        ports = Ports()
        values = demo_values(server.url, ports)
        settings = settings_of(values)
        own_log = stack.enter_context((logs / "demo.log").open("a"))
        configure_logging(settings, stream=own_log)  # the services called in-process log here
        procs = Processes(logs, environment(values, dict(os.environ)))
        stack.callback(procs.close)
        procs.start("sandbox", "sandbox", "--port", str(ports.sandbox), "--no-access-log")
        procs.start("ingress", "ingress", "--port", str(ports.ingress))
        procs.start("worker", "worker", "--threads", "4")
        procs.start("monitor", "monitor")
        base = f"http://127.0.0.1:{ports.ingress}"
        procs.wait_ready("sandbox", f"http://127.0.0.1:{ports.sandbox}/_sandbox/health")
        procs.wait_ready("ingress", f"{base}/readyz")
        procs.wait_ready("monitor", f"http://127.0.0.1:{ports.monitor}/healthz")
        admin = stack.enter_context(SandboxAdmin(f"http://127.0.0.1:{ports.sandbox}"))
        doors = FrontDoors(
            base,
            Secrets(
                crm=values["crm_webhook_secrets"],
                stripe=values["stripe_webhook_secret"],
                billing_token=values["ingress_tokens"],
            ),
        )
        stack.callback(doors.close)
        client = redis.Redis.from_url(server.url)
        stack.callback(client.close)
    scene = Scene(settings, client, admin, doors, {c.client_id: c for c in CAST})
    scene.servers = {
        "ingress": base,
        "Subaccount API (sandbox)": settings.api_base_url,
        "Redis": settings.redis_url,
    }
    return scene, procs, ports


def tell(out: Console, scene: Scene, chapters: Sequence[ChapterFn]) -> list[Check]:
    """Run and print each chapter, then the final state; every expectation checked on the way."""
    names = ", ".join(f"{c.name} ({c.client_id})" for c in scene.cast.values())
    out.print(Text("subaccount-worker demo", "bold") + Text(f": the story of {names}"))
    servers = ", ".join(f"{name} {url}" for name, url in scene.servers.items())
    out.print(Text(f"Running: {servers}, a worker and the credit monitor.", "dim"))
    checks: list[Check] = []
    for number, chapter_fn in enumerate(chapters, 1):
        try:
            ch = chapter_fn(scene)
        except STORY_ERRORS as exc:
            failed = Check(f"chapter {number} ({chapter_fn.__name__}) finished", False, str(exc))
            out.print(Text(f"\n✗ chapter {number} stopped: {exc}", "bold red"))
            return [*checks, failed]
        ch.title = f"{number}. {ch.title}"
        render.chapter(out, scene, ch)
        checks += ch.checks
    summary = summarize(scene)
    render.final(out, summary)
    return [*checks, *summary.chapter.checks]


def _console_until_interrupted(out: Console, procs: Processes, scene: Scene, ports: Ports) -> None:
    """Start the console over the same story; keep everything running until Ctrl-C."""
    redis_url = scene.settings.redis_url
    procs.start("console", "console", "--port", str(ports.console))
    url = f"http://127.0.0.1:{ports.console}"
    procs.wait_ready("console", f"{url}/healthz")
    token = scene.settings.console_tokens[0].get_secret_value().split(":", 2)[2]
    out.print()
    out.print(
        Text("The console: ", "bold") + Text(f"{url}/  (log in as demo with the token {token})")
    )
    out.print(
        Text("Everything keeps running until Ctrl-C, which stops it all. Explore with:", "bold")
    )
    for command in ("status", "dead-letters jobs", "credits list", "audit list"):
        out.print(Text(f"  SUBACCOUNT_WORKER_REDIS_URL={redis_url} subaccount-worker {command}"))
    try:
        while all(n in procs.alive() for n in ("worker", "ingress", "monitor", "console")):
            time.sleep(1)
        out.print(Text("a server stopped on its own; see the logs", "red"))
    except KeyboardInterrupt:
        out.print(Text("\nstopping ...", "dim"))


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM unwind the story, so every process started here is stopped.

    SIGINT is set explicitly: a shell starts background jobs with it ignored.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        _ignore_interrupts()  # a second Ctrl-C must not cut the stopping short
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore_interrupts() -> None:
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
