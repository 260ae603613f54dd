"""Commands that run the system's processes: worker, ingress, sandbox, demo; and check-config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from worker.cli.base import app, configure_logging, guard, load


@app.command()
def sandbox(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8025, help="Port to listen on."),
    api_key: str = typer.Option(
        "", envvar="SUBACCOUNT_WORKER_API_KEY", help="The API key the sandbox accepts."
    ),
    faults: Path | None = typer.Option(None, help="JSON file with the initial fault config."),
    access_log: bool = typer.Option(True, help="Log every request (uvicorn's access log)."),
) -> None:
    """Serve the Subaccount API sandbox (v5 under /v5, v6 under /v6, admin under /_sandbox)."""
    from worker.sandbox import serve

    if not api_key:
        typer.echo("error: give --api-key or set SUBACCOUNT_WORKER_API_KEY", err=True)
        raise typer.Exit(2)
    config = _read_faults(faults) if faults else None
    serve(host, port, api_key, config, access_log=access_log)


def _read_faults(path: Path) -> Any:
    """The fault config in `path`, validated; anything wrong ends the command with one line."""
    from pydantic import ValidationError

    from worker.sandbox.faults import FaultConfig

    try:
        return FaultConfig.model_validate_json(path.read_bytes())
    except OSError as exc:
        problem = exc.strerror or type(exc).__name__
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        problem = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in errors[:5]
        )
        if len(errors) > 5:
            problem += f"; ... and {len(errors) - 5} more"
    typer.echo(f"error: --faults {path}: {problem[:2000]}", err=True)
    raise typer.Exit(2)


@app.command()
def worker(
    processes: int = typer.Option(0, help="Worker processes (default: settings)."),
    threads: int = typer.Option(0, help="Threads per process (default: settings)."),
    module: str = typer.Option(
        "worker.actors", help="Module declaring the broker and actor (wrap ours to add middleware)."
    ),
    metrics_port: int | None = typer.Option(
        None,
        min=0,
        max=65535,
        help="Port of /metrics and /healthz (default: SUBACCOUNT_WORKER_METRICS_PORT; 0: none).",
    ),
) -> None:
    """Run the event consumers: Dramatiq processes loading `worker.actors`, kept running."""
    from worker.ops import supervisor

    settings = load()
    guard(settings.require_api)
    configure_logging(settings)
    from worker.log import get_logger

    get_logger(__name__).info(
        "worker.starting",
        api_base_url=settings.api_base_url_for_display(),
        api_surface=settings.api_surface.value,
    )
    procs = processes or settings.worker_processes
    threads = threads or settings.worker_threads
    code = guard(lambda: supervisor.run(settings, procs, threads, module, metrics_port))
    raise typer.Exit(code)


@app.command()
def ingress(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8080, help="Port to listen on."),
) -> None:
    """Serve the HTTP ingress for billing events, Stripe webhooks and CRM webhooks."""
    from worker.ingress import serve
    from worker.redis_access import verify_credentials

    settings = load()
    configure_logging(settings)
    guard(lambda: verify_credentials(settings))
    guard(lambda: serve(settings, host, port))  # a metrics port taken: one line, exit 2


@app.command()
def demo(
    ci: bool = typer.Option(False, "--ci", help="Exit after the story (no console to explore)."),
) -> None:
    """Tell three clients' story through the real front doors, check it, then open the console."""
    from worker.dev.demo import run

    raise typer.Exit(guard(lambda: run(ci=ci)))


@app.command("check-config")
def check_config(
    redis_check: bool = typer.Option(
        False, "--redis", help="Also ask Redis what durability it gives, and print its warnings."
    ),
) -> None:
    """Validate the settings and print them (secrets hidden)."""
    settings = load()
    shown = json.loads(settings.model_dump_json())
    shown["redis_url"] = settings.redis_url_for_display()
    shown["redis_read_url"] = settings.redis_read_url_for_display()
    shown["api_base_url"] = settings.api_base_url_for_display()
    shown["notify_url"] = settings.notify_url_for_display()
    typer.echo(json.dumps(shown, indent=2))
    if not settings.api_base_url:
        typer.echo(
            "note: SUBACCOUNT_WORKER_API_BASE_URL is not set: `worker` refuses to start", err=True
        )
    if redis_check:
        _check_redis(settings)


def _check_redis(settings: Any) -> None:
    """Print the durability the worker and ingress would give on this Redis, and its warnings
    (one line each, on stderr); a guarantee it cannot give ends the command as the start would."""
    from worker import durability
    from worker.redis_access import CHECK_TIMEOUT_S, connect

    client = connect(settings, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=1.0)
    try:
        guarantee, found = guard(lambda: durability.describe(settings, client))
    finally:
        client.close()
    typer.echo(f"durability: {guarantee} ({durability.SETTING}={settings.redis_durability})")
    for line in found:
        typer.echo(f"warning: {line}", err=True)
