"""Dramatiq's keys in their own Redis database, and how our code reaches them.

The broker's maintenance runs `KEYS <ns>:__acks__.<dead worker>*` inside its dispatch script,
which blocks Redis for as long as the scan over the whole database takes: in the database of the
ledger and business keys (millions, kept 30 days) that was 635 ms. In a database of its own
(`SUBACCOUNT_WORKER_BROKER_REDIS_DB`, default 1, on the server of `SUBACCOUNT_WORKER_REDIS_URL`)
it scans only the broker's few keys. The Dramatiq broker gets a client of that database
(`Settings.broker_url`). Our own writes that must be atomic with a record of ours (an enqueued
event, an operator's replay, a credit notification) stay on the process's one connection and
switch database inside their MULTI/EXEC or Lua script with SELECT, which Redis allows in both
and undoes before the connection goes back to the pool; reads of the queue do the same in one
pipeline. On the same server the broker follows Sentinel failovers with the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from worker.settings import Settings


@dataclass(frozen=True)
class Keyspace:
    """The database of our records and the database of Dramatiq's keys."""

    data_db: int
    broker_db: int

    @classmethod
    def of(cls, settings: Settings) -> Keyspace:
        return cls(settings.redis_db, settings.broker_redis_db)

    @classmethod
    def default(cls, data_db: int = 0) -> Keyspace:
        """The default layout for records in `data_db` (tools that hold only a client)."""
        return cls(data_db, int(Settings.model_fields["broker_redis_db"].default))

    @property
    def separate(self) -> bool:
        return self.data_db != self.broker_db

    def enter(self, pipe: Any) -> None:
        """Queue a switch to the broker's database on `pipe` (nothing when shared)."""
        if self.separate:
            pipe.execute_command("SELECT", self.broker_db)

    def leave(self, pipe: Any) -> None:
        """Queue the switch back to our records' database on `pipe`."""
        if self.separate:
            pipe.execute_command("SELECT", self.data_db)

    def wrap(self, commands: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Raw `commands` (for a MULTI sent by hand) between the switch there and back."""
        if not self.separate:
            return commands
        return [("SELECT", self.broker_db), *commands, ("SELECT", self.data_db)]

    def lua_args(self) -> list[int]:
        """The two databases, for a Lua script that writes both (`SELECT` inside it)."""
        return [self.broker_db, self.data_db]

    def read(self, client: redis.Redis, commands: Callable[[Any], None]) -> list[Any]:
        """Run the reads `commands` queues on a pipeline in the broker's database; their
        replies in order (without the SELECTs')."""
        pipe = client.pipeline(transaction=False)
        self.enter(pipe)
        commands(pipe)
        self.leave(pipe)
        replies: list[Any] = pipe.execute()
        return replies[1:-1] if self.separate else replies
