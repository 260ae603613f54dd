"""How long a queued message has been ready: since its delay ended (a retry's backoff, a wait
for its client's onboarding), else since it was published. A message waiting for onboarding is
delayed, not ready, so it never reads as a stuck queue (`status`, the overview, the
`saw_queue_oldest_age_seconds` gauge behind the `QueueStalled` rule)."""

from __future__ import annotations

from typing import Any


def ready_since_ms(message: dict[str, Any]) -> int:
    """The time (Unix ms) a Dramatiq message became ready: its `eta` when it was delayed, else
    its `message_timestamp`; 0 when it says neither."""
    options = message.get("options")
    eta = options.get("eta") if isinstance(options, dict) else None
    stamp = int(message.get("message_timestamp") or 0)
    return max(stamp, int(eta)) if eta else stamp
