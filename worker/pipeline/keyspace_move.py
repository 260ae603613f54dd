"""Moving the messages a shared-keyspace deployment left in the records' database.

Before `SUBACCOUNT_WORKER_BROKER_REDIS_DB` Dramatiq's keys lived beside the ledger. A worker that
starts with the broker in its own database first moves what waits there (ready and delayed
messages of its queues) into the broker's database, in batches that are each one script (a
message is in exactly one place at any time), so an upgrade strands nothing. Messages in flight
at an old worker stay in its ack set, where that worker or its maintenance handles them; a later
start moves whatever they put back.
"""

from __future__ import annotations

from typing import Any

import redis

from worker import keys
from worker.pipeline.keyspace import Keyspace
from worker.settings import Settings

BATCH = 500
# KEYS: a queue list and its messages hash (the same names in both databases).
# ARGV: records' db, broker db, batch size. Moves up to a batch from the head; returns how many.
MOVE = """
local ids = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
if #ids == 0 then return 0 end
local pairs_, kept = {}, {}
for _, id in ipairs(ids) do
  local message = redis.call('HGET', KEYS[2], id)
  if message then
    pairs_[#pairs_ + 1] = id
    pairs_[#pairs_ + 1] = message
    kept[#kept + 1] = id
  end
end
redis.call('LTRIM', KEYS[1], #ids, -1)
if #kept > 0 then
  redis.call('HDEL', KEYS[2], unpack(kept))
  redis.call('SELECT', ARGV[2])
  redis.call('HSET', KEYS[2], unpack(pairs_))
  redis.call('RPUSH', KEYS[1], unpack(kept))
  redis.call('SELECT', ARGV[1])
end
return #ids
"""


def queues_of(settings: Settings) -> list[str]:
    """The Dramatiq lists our processes consume: the events' and notifications', and delays."""
    names = [settings.queue_name, settings.notify_queue_name]
    return [keys.dramatiq_queue(settings.key_prefix, n) for q in names for n in (q, f"{q}.DQ")]


def move_to_broker_db(client: redis.Redis, settings: Settings) -> int:
    """Move the messages waiting in the records' database to the broker's; how many moved.
    Nothing to do (0) when the broker shares the records' database."""
    space = Keyspace.of(settings)
    if not space.separate:
        return 0
    script: Any = client.register_script(MOVE)
    moved = 0
    for queue in queues_of(settings):
        while True:
            names, args = [queue, f"{queue}.msgs"], [space.data_db, space.broker_db, BATCH]
            taken = int(script(keys=names, args=args))
            if taken == 0:
                break
            moved += taken
    return moved
