"""`make demo`: the whole system on loopback, three clients' story through the real front doors.

A private Redis, the sandbox, the ingress and a worker start on free ports, logging to files in a
temporary directory. The story's chapters (`story`) send signed webhooks and act as operators;
each says what happened and checks it. Then, unless `ci`, the console stays up until Ctrl-C.
Every process started here is stopped on the way out, whatever the way out is.
"""

from __future__ import annotations

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
from worker.sandbox.client import SandboxAdmin, SandboxAdminError

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
    """Tell the story; 0 if every expectation held, 1 if not, 130 if interrupted."""
    out = render.console()
    logs = Path(tempfile.mkdtemp(prefix="saw-demo-"))
    began = time.monotonic()
    try:
        with _sigterm_interrupts(), ExitStack() as stack:
            scene, procs = _start(stack, logs, out)
            checks = tell(out, scene, CHAPTERS)
            render.verdict(out, checks, time.monotonic() - began, str(logs))
            ok = all(c.ok for c in checks)
            if not ci:
                _console_until_interrupted(out, procs, scene)
            return 0 if ok else 1
    except KeyboardInterrupt:
        out.print(Text(f"\ninterrupted: every process stopped; logs in {logs}", "yellow"))
        return 130
    except (ProcessDied, SubaccountWorkerError, AssertionError) as exc:
        out.print(Text(f"the demo could not start: {exc}; logs in {logs}", "bold red"))
        return 1


def _start(stack: ExitStack, logs: Path, out: Console) -> tuple[Scene, Processes]:
    """Redis, sandbox, ingress and worker up and ready; the scene wired to them."""
    with out.status("starting Redis, the sandbox, the ingress and a worker ..."):
        server = RedisServer("--logfile", str(logs / "redis.log")).start()
        stack.callback(server.cleanup)
        ports = Ports()
        values = demo_values(server.url, ports)
        settings = settings_of(values)
        procs = Processes(logs, environment(values, dict(_environ())))
        stack.callback(procs.close)
        procs.start("sandbox", "sandbox", "--port", str(ports.sandbox), "--no-access-log")
        procs.start("ingress", "ingress", "--port", str(ports.ingress))
        procs.start("worker", "worker", "--threads", "4")
        base = f"http://127.0.0.1:{ports.ingress}"
        procs.wait_ready("sandbox", f"http://127.0.0.1:{ports.sandbox}/_sandbox/health")
        procs.wait_ready("ingress", f"{base}/readyz")
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
    return scene, procs


def tell(out: Console, scene: Scene, chapters: Sequence[ChapterFn]) -> list[Check]:
    """Run and print each chapter, then the final state; every expectation checked on the way."""
    names = ", ".join(f"{c.name} ({c.client_id})" for c in scene.cast.values())
    out.print(Text("subaccount-worker demo", "bold") + Text(f": the story of {names}"))
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


def _console_until_interrupted(out: Console, procs: Processes, scene: Scene) -> None:
    """Placeholder until the console lands: wait for Ctrl-C with the system still running."""
    out.print(Text("Everything keeps running; Ctrl-C stops it all.", "bold"))
    while True:
        time.sleep(3600)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the processes started here are stopped either way."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)
