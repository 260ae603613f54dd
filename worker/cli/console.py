"""`console`: the operations console (web pages and JSON API) on one port."""

from __future__ import annotations

import typer

from worker.cli.base import app, configure_logging, guard, load


@app.command()
def console(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8090, help="Port to listen on."),
) -> None:
    """Serve the operations console: dead letters, replay jobs, clients, credits and audit."""
    from worker.console import create_app
    from worker.console.app import run

    settings = load()
    configure_logging(settings)
    application = guard(lambda: create_app(settings))
    run(application, host, port)
