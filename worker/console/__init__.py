"""The operations console: web pages and a JSON API over the operations and credits services."""

from __future__ import annotations

from worker.console.app import create_app, serve

__all__ = ["create_app", "serve"]
