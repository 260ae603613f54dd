"""The one error the decisions raise: an event that is not in the catalogue's shape.

It lives here, beside the catalogue, because `handlers/` imports nothing of `worker/`. The worker's
tree (`worker/errors.py`) draws it, and its boundaries (CLI, ingress) catch it with their own.
"""

from __future__ import annotations


class InvalidEvent(Exception):
    """An event failed validation; `reasons` names each bad field. Nothing was enqueued."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("invalid event: " + "; ".join(reasons))
