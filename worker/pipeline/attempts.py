"""The Redis side of one event attempt, batched into as few round trips as the promises allow.

An attempt costs two round trips plus one per step:
1. `open`: count the delivery, take the client's lease lock, read the client state and the
   event's ledger: one Lua call.
2. `begin_step` (per step): record the previous step's result, check and renew the lease, mark
   the step in progress, claim the business key (e.g. an invoice id): one Lua call.
3. `finish`: record the last step's result; then, only while the lease is still ours, write the
   client state, the outcome, the dead letter if any, and release the lease: one Lua call.
A step's result is always written, lease or not: the effect did happen. (`step_done` writes it
alone on the rare paths that make no further call.)

The lock is a lease (token + expiry), renewed before every step and released only by its holder.
It keeps two workers off one client; the ledger, not the lock, is what makes a step safe to redo.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from handlers.plan import ClientState
from worker import keys
from worker.errors import BrokerUnavailable
from worker.pipeline.ledger import OUTCOME_FIELD, Ledger, StepRecord
from worker.pipeline.scripts import LuaScript, ScriptRunner

# KEYS: ledger, lock, client, deliveries. ARGV: token, lock ttl, outcome field, deliveries ttl.
_OPEN = LuaScript("""
local outcome = redis.call('HGET', KEYS[1], ARGV[3])
if outcome then return {'finished', outcome} end
local n
if redis.call('GET', KEYS[2]) == ARGV[1] then
  -- our own lease: kept for this retry, or from before a Redis outage; take it back
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
elseif not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'busy', 0}
end
n = redis.call('INCR', KEYS[4])
redis.call('PEXPIRE', KEYS[4], ARGV[4])
return {'locked', n, redis.call('GET', KEYS[3]) or '', redis.call('HGETALL', KEYS[1])}
""")

# KEYS: lock, ledger, business key and its amount key (both the ledger again when none).
# ARGV: token, lock ttl, step field, in-progress record, event key, ledger ttl (s), has business
# key, duplicate record, the previous step's done record (field, record; '' for none; written
# whatever the lease says), the step's amount ('' for none). The business key holds the owning
# event's key (as every version writes and reads it); the amount key holds "<event key>
# <amount>" of the claim. Returns (lease held, owner, owner's amount, conflict): the same effect
# claimed by another event for another amount is a conflict, for which no record is written and
# the caller dead-letters the event (a human must look).
_BEGIN_STEP = LuaScript("""
if ARGV[9] ~= '' then redis.call('HSET', KEYS[2], ARGV[9], ARGV[10]) end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0, '', '', 0} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local owner, owner_amount = ARGV[5], ''
if ARGV[7] == '1' then
  if redis.call('SET', KEYS[3], ARGV[5], 'NX', 'EX', ARGV[6]) and ARGV[11] ~= '' then
    redis.call('SET', KEYS[4], ARGV[5] .. ' ' .. ARGV[11], 'EX', ARGV[6])
  end
  owner = redis.call('GET', KEYS[3])
  local claim = redis.call('GET', KEYS[4])
  if claim then
    local claimant, amount = string.match(claim, '^(%S+) (%S+)$')
    if claimant == owner then owner_amount = amount end
  end
end
if owner == ARGV[5] then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
elseif owner_amount ~= '' and ARGV[11] ~= '' and owner_amount ~= ARGV[11] then
  return {1, owner, owner_amount, 1}
else
  redis.call('HSET', KEYS[2], ARGV[3], (string.gsub(ARGV[8], '__OWNER__', owner)))
end
redis.call('EXPIRE', KEYS[2], ARGV[6])
return {1, owner, owner_amount, 0}
""")

# KEYS: lock, ledger, client, deliveries, outcomes, dead hash, dead index, dead counts.
# ARGV: token, outcome json, state json or '', ledger ttl, stream maxlen, event key,
#       dead letter json or '', now ms, dead reason, the last step's done record (field,
#       record; '' for none; written whatever the lease says), then stream field/value pairs.
_FINISH = LuaScript("""
if ARGV[10] ~= '' then redis.call('HSET', KEYS[2], ARGV[10], ARGV[11]) end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3]) end
redis.call('HSET', KEYS[2], '_outcome', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('DEL', KEYS[4])
if ARGV[7] ~= '' then
  if redis.call('HSET', KEYS[6], ARGV[6], ARGV[7]) == 1 then
    redis.call('HINCRBY', KEYS[8], ARGV[9], 1)
  end
  redis.call('ZADD', KEYS[7], ARGV[8], ARGV[6])
end
local fields = {}
for i = 12, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', unpack(fields))
redis.call('DEL', KEYS[1])
return 1
""")

# KEYS: lock, ledger, deliveries. ARGV: token, ttl ms, done field or '', done record, '1' to
# reset the delivery count (a controlled ending of this delivery: the lease is kept for the
# retry). The done record is written whatever the lease says.
_RENEW = LuaScript("""
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[3], ARGV[4]) end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[5] == '1' then redis.call('DEL', KEYS[3]) end
return 1
""")

# KEYS: ledger, business key and its amount key (or the ledger again). ARGV: step field, event key.
_CLEAR = LuaScript("""
redis.call('HDEL', KEYS[1], ARGV[1])
if KEYS[2] ~= KEYS[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2], KEYS[3])
end
return 1
""")

# KEYS: dead hash, dead index, dead counts, ledger, outcomes. ARGV: event key, dead letter,
# now ms, reason, outcome json, ledger ttl, stream maxlen, then stream field/value pairs.
# Counts a reason once per dead letter, and marks the event finished like `_FINISH` does.
_DEAD_UNLOCKED = LuaScript("""
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[4], '_outcome', ARGV[5])
redis.call('EXPIRE', KEYS[4], ARGV[6])
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*', unpack(fields))
return 1
""")

# KEYS: lock, deliveries. A controlled early release also resets the delivery count: the
# count measures deliveries that died before any ending.
_RELEASE = LuaScript("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  return redis.call('DEL', KEYS[1])
end
return 0
""")


# A finished step's ledger record, waiting to ride on the attempt's next Redis call.
StepDone = tuple[str, StepRecord]


def _done_args(done: StepDone | None) -> list[str]:
    return [done[0], done[1].encode()] if done else ["", ""]


@dataclass(frozen=True)
class Claim:
    """Who holds a business key (e.g. an invoice id), and for what amount, if recorded (claims
    made by versions before 0.1.0 have none)."""

    event_key: str
    amount: int | None = None
    conflict: bool = False  # another event claimed it for another amount


@dataclass(frozen=True)
class Opened:
    """What `open` found: `status` is 'finished', 'busy' or 'locked'."""

    status: str
    deliveries: int = 0
    state: ClientState | None = None
    ledger: Ledger | None = None
    outcome: str = ""  # 'finished': how the event ended the first time


@dataclass(frozen=True)
class Finish:
    """Everything the finishing transaction writes."""

    outcome: dict[str, Any]  # appended to the outcome stream; its `outcome` marks the ledger
    state: ClientState | None  # None: client state unchanged
    dead_letter: str | None = None  # encoded DeadLetter, or None


class AttemptStore:
    """Redis operations of event attempts, each one round trip."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        lock_ttl_ms: int,
        ledger_ttl_s: int,
        outcome_maxlen: int,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._lock_ttl_ms = lock_ttl_ms
        self._ledger_ttl_s = ledger_ttl_s
        self._outcome_maxlen = outcome_maxlen
        self._scripts = ScriptRunner(client)

    def close(self) -> None:
        """Close the worker threads' own connections (the shared pool is the client's)."""
        self._scripts.close()

    @staticmethod
    def new_token() -> str:
        """A fresh lease token: only its holder can renew or release the lock."""
        return secrets.token_hex(12)

    def open(self, event_key: str, client_id: str, token: str) -> Opened:
        keys_ = [
            keys.ledger(self._prefix, event_key),
            keys.lock(self._prefix, client_id),
            keys.client(self._prefix, client_id),
            keys.deliveries(self._prefix, event_key),
        ]
        args = [token, self._lock_ttl_ms, OUTCOME_FIELD, self._ledger_ttl_s * 1000]
        reply = self._run(_OPEN, keys_, args)
        status = _text(reply[0])
        if status == "finished":
            return Opened(status, outcome=_finished(reply[1]))
        if status == "busy":
            return Opened(status, deliveries=int(reply[1]))
        raw_state, flat = reply[2], reply[3]
        try:
            state = (
                ClientState.model_validate_json(raw_state)
                if raw_state
                else ClientState(client_id=client_id)
            )
            ledger = Ledger.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))
        except (ValueError, KeyError, TypeError):
            self.release(event_key, client_id, token)  # unreadable records: don't block the client
            raise
        return Opened(status, deliveries=int(reply[1]), state=state, ledger=ledger)

    def begin_step(
        self,
        event_key: str,
        client_id: str,
        token: str,
        step: str,
        record: StepRecord,
        business_key: str | None,
        duplicate: StepRecord,
        done: StepDone | None = None,
        amount: int | None = None,
    ) -> tuple[bool, Claim]:
        """Record the previous step's `done`, renew the lease and mark `step` in progress,
        claiming `business_key` for `amount`; return (lease held, the key's claim)."""
        ledger_key = keys.ledger(self._prefix, event_key)
        keys_ = [
            keys.lock(self._prefix, client_id),
            ledger_key,
            *self._business(business_key, ledger_key),
        ]
        args = [
            token,
            self._lock_ttl_ms,
            step,
            record.encode(),
            event_key,
            self._ledger_ttl_s,
            "1" if business_key else "0",
            duplicate.encode(),
            *_done_args(done),
            "" if amount is None else amount,
        ]
        held, owner, amount, conflict = self._run(_BEGIN_STEP, keys_, args)
        return bool(held), Claim(_text(owner), int(amount) if amount else None, bool(conflict))

    def renew(self, event_key: str, client_id: str, token: str, done: StepDone | None) -> bool:
        """Record the previous step's `done` and renew the lease; False if it was lost."""
        return self._renew_for(event_key, client_id, token, done, self._lock_ttl_ms, False)

    def hold(
        self, event_key: str, client_id: str, token: str, done: StepDone | None, delay_ms: int
    ) -> bool:
        """Keep the lease through a retry's delay (the retry comes back with `token`)."""
        ttl = delay_ms + self._lock_ttl_ms
        return self._renew_for(event_key, client_id, token, done, ttl, True)

    def _renew_for(
        self,
        event_key: str,
        client_id: str,
        token: str,
        done: StepDone | None,
        ttl_ms: int,
        ending: bool,
    ) -> bool:
        keys_ = [
            keys.lock(self._prefix, client_id),
            keys.ledger(self._prefix, event_key),
            keys.deliveries(self._prefix, event_key),
        ]
        args = [token, ttl_ms, *_done_args(done), "1" if ending else "0"]
        return bool(self._run(_RENEW, keys_, args))

    def step_done(self, event_key: str, done: StepDone) -> None:
        """Record a finished step on its own (whatever happens to the lease: it did happen)."""
        step, record = done
        try:
            self._redis.hset(keys.ledger(self._prefix, event_key), step, record.encode())
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"could not record step {step}: {exc}") from exc

    def clear_step(self, event_key: str, step: str, business_key: str | None = None) -> None:
        """Forget a step proven not applied, and give back its business key if we hold it, so
        the next attempt (or another event for the same invoice) can run it afresh."""
        ledger_key = keys.ledger(self._prefix, event_key)
        self._run(
            _CLEAR, [ledger_key, *self._business(business_key, ledger_key)], [step, event_key]
        )

    def _business(self, business_key: str | None, none: str) -> list[str]:
        """The business key and its amount key, or `none` twice when the step has none."""
        if not business_key:
            return [none, none]
        kind, _, business_id = business_key.partition(":")
        return [
            keys.business(self._prefix, kind, business_id),
            keys.business_amount(self._prefix, kind, business_id),
        ]

    def finish(
        self,
        event_key: str,
        client_id: str,
        token: str,
        finish: Finish,
        now_ms: int,
        done: StepDone | None = None,
    ) -> bool:
        """Record the last step's `done`, then, while the lease is ours, write the outcome (and
        state, dead letter) and release; False if the lease was lost."""
        keys_ = [
            keys.lock(self._prefix, client_id),
            keys.ledger(self._prefix, event_key),
            keys.client(self._prefix, client_id),
            keys.deliveries(self._prefix, event_key),
            keys.outcomes(self._prefix),
            keys.dead_letters(self._prefix),
            keys.dead_letter_index(self._prefix),
            keys.dead_letter_counts(self._prefix),
        ]
        args: list[Any] = [
            token,
            _finished_as(finish.outcome),
            finish.state.model_dump_json() if finish.state else "",
            self._ledger_ttl_s,
            self._outcome_maxlen,
            event_key,
            finish.dead_letter or "",
            now_ms,
            finish.outcome.get("reason") or "",
            *_done_args(done),
            *[item for pair in _stream_fields(finish.outcome).items() for item in pair],
        ]
        return bool(self._run(_FINISH, keys_, args))

    def record_duplicate(self, outcome: dict[str, Any]) -> None:
        """Append a duplicate delivery's outcome to the stream (no lock: nothing else changes)."""
        try:
            self._redis.xadd(
                keys.outcomes(self._prefix),
                _stream_fields(outcome),
                maxlen=self._outcome_maxlen,
                approximate=True,
            )
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"could not record duplicate: {exc}") from exc

    def release(self, event_key: str, client_id: str, token: str) -> None:
        """Give the lease back early (before a delayed retry); harmless if it already expired."""
        keys_ = [keys.lock(self._prefix, client_id), keys.deliveries(self._prefix, event_key)]
        self._run(_RELEASE, keys_, [token])

    def record_unlocked(self, event_key: str, outcome: dict[str, Any], dead_letter: str) -> None:
        """Dead-letter an event that has no valid client to lock (it failed validation)."""
        keys_ = [
            keys.dead_letters(self._prefix),
            keys.dead_letter_index(self._prefix),
            keys.dead_letter_counts(self._prefix),
            keys.ledger(self._prefix, event_key),
            keys.outcomes(self._prefix),
        ]
        args = [event_key, dead_letter, outcome["at_ms"], outcome["reason"], _finished_as(outcome)]
        args += [self._ledger_ttl_s, self._outcome_maxlen]
        args += [item for pair in _stream_fields(outcome).items() for item in pair]
        self._run(_DEAD_UNLOCKED, keys_, args)

    def _run(self, script: LuaScript, keys_: list[str], args: list[Any]) -> Any:
        try:
            return self._scripts(script, keys_, args)
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"Redis failed during an attempt: {exc}") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _finished(raw: bytes) -> str:
    """How a finished event ended, from its ledger's `_outcome` (whatever wrote it)."""
    try:
        value = json.loads(raw)
    except ValueError:
        return _text(raw)
    return str(value.get("outcome", "")) if isinstance(value, dict) else _text(raw)


def _finished_as(outcome: dict[str, Any]) -> str:
    """The ledger's `_outcome` value: how the event ended, as `{"outcome": ...}` (the full record
    is in the outcome stream; the shape is the one earlier versions wrote and read)."""
    return _json({"outcome": outcome["outcome"]})


def _stream_fields(outcome: dict[str, Any]) -> dict[FieldT, EncodableT]:
    """An outcome as stream fields: strings and whole numbers as text, anything else as JSON."""
    return {k: _field(v) for k, v in outcome.items()}


def _field(value: Any) -> str:
    if isinstance(value, str):
        return value
    if type(value) is int:  # (not bool: JSON spells those true/false)
        return str(value)
    return _json(value)
