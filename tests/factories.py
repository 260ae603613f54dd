"""Moved to `handlers.examples`; kept so older imports keep working."""

from handlers.examples import *  # noqa: F403
from handlers.examples import T0, at, event  # noqa: F401
