"""The Redis side of one event attempt, batched into as few round trips as the promises allow.

An attempt costs two round trips plus one per step:
1. `open`: count the delivery, take the client's lease lock, read the client state and the
   event's ledger: one Lua call.
2. `begin_step` (per grant): record the previous step's result, check and renew the lease, mark
   the grant in progress, claim its business key (e.g. an invoice id): one Lua call. Other
   steps renew the lease with `renew` before each step but the first.
3. `finish`: record the last step's result; then, only while the lease is still ours, write the
   client state, the outcome, the dead letter if any, and release the lease: one Lua call.
A step's result is always written, lease or not: the effect did happen. (`step_done` writes it
alone on the rare paths that make no further call.)

The lock is a lease (token + expiry), renewed before every step and released only by its holder.
It keeps two workers off one client; the ledger, not the lock, is what makes a step safe to redo.
The scripts live in `worker/pipeline/lua/`, one file each, naming their keys and arguments first.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from handlers.outcomes import Outcome
from handlers.plan import AddCredits, ClientState, step_name
from worker import keys
from worker.durability import Durability
from worker.errors import BrokerUnavailable
from worker.pipeline.ledger import OUTCOME_FIELD, Ledger, StepRecord, StepState
from worker.pipeline.scripts import LuaScript, ScriptRunner

# The scripts of an attempt (`worker/pipeline/lua/*.lua`), each naming its keys and arguments.
_OPEN = LuaScript.load("open")
_BEGIN_STEP = LuaScript.load("begin_step")
_FINISH = LuaScript.load("finish", "dead_letter_truth")
_RENEW = LuaScript.load("renew")
_RELEASE_CLAIM = LuaScript.load("release_claim")
_DEAD_LETTER_UNLOCKED = LuaScript.load("dead_letter_unlocked", "dead_letter_truth")
_RELEASE = LuaScript.load("release")
_GRANTS_SINCE = LuaScript.load("grants_since")
_SETTLE = LuaScript.load("settle")
_DUPLICATE = LuaScript.load("duplicate")

GRANTS_KEPT = 50  # a client's grants remembered (newest), to judge evidence against
GRANTS_CHECKED = 10  # the newest of them checked for a dangling grant when a lease is taken


# A finished step's ledger record, waiting to ride on the attempt's next Redis call.
StepDone = tuple[str, StepRecord]


def _done_args(done: StepDone | None) -> list[str]:
    return [done[0], done[1].encode()] if done else ["", ""]


def _grant_args(grant: AddCredits | None) -> list[Any]:
    return [step_name(grant), grant.business_key, grant.request.amount] if grant else ["", "", ""]


@dataclass(frozen=True)
class BeginStep:
    """A grant about to be sent: its in-progress record (with the evidence read before it), the
    business key it claims and for how many credits, and the previous step's record to write."""

    event_key: str
    client_id: str
    token: str
    step: str
    record: StepRecord
    business_key: str  # e.g. "invoice:INV-1"
    amount: int
    done: StepDone | None = None


class ClaimStatus(StrEnum):
    """What claiming a grant's business key found (the rule is in `lua/begin_step.lua`)."""

    CLAIMED = "claimed"  # ours (fresh, ours already, or taken over from an owner without effect)
    DUPLICATE = "duplicate"  # another event's grant of the same amount took effect
    CONFLICT = "conflict"  # another event holds it for another amount
    HELD = "held"  # another event's grant is undecided and that event has finished
    PENDING = "pending"  # another event holds it and is still being worked on


@dataclass(frozen=True)
class Claim:
    """Who holds a business key (e.g. an invoice id), for what amount (None: its amount record
    is missing, which reads as a conflict), and what that means for this event."""

    event_key: str
    amount: int | None = None
    status: ClaimStatus = ClaimStatus.CLAIMED
    owner_reason: str = ""  # why the owner was dead-lettered, when it was

    @property
    def conflict(self) -> bool:
        return self.status == ClaimStatus.CONFLICT


@dataclass(frozen=True)
class Grant:
    """One grant this system started for a client: whose, which step, how many credits."""

    event_key: str
    step: str
    amount: int

    @property
    def member(self) -> str:
        """Its entry in the client's grants (`keys.grants`)."""
        return f"{self.event_key} {self.step} {self.amount}"

    @classmethod
    def parse(cls, member: bytes | str) -> Grant:
        event_key, step, amount = _text(member).split(" ")
        return cls(event_key, step, int(amount))


@dataclass(frozen=True)
class Dangling:
    """Another event's grant left in progress (its worker died mid-call), as `open` found it."""

    grant: Grant
    record: StepRecord
    raw: str  # the record as stored: settling it is a compare-and-set on this


@dataclass(frozen=True)
class Opened:
    """What `open` found: `status` is 'finished', 'busy' or 'locked'."""

    status: str
    deliveries: int = 0
    state: ClientState | None = None
    ledger: Ledger | None = None
    outcome: Outcome | None = None  # 'finished': how the event ended the first time
    dangling: tuple[Dangling, ...] = ()  # 'locked': other events' grants to settle first


@dataclass(frozen=True)
class Finish:
    """Everything the finishing transaction writes."""

    outcome: dict[str, Any]  # appended to the outcome stream; its `outcome` marks the ledger
    state: ClientState | None  # None: client state unchanged
    dead_letter: str | None = None  # encoded DeadLetter, or None
    grant: AddCredits | None = None  # the plan's grant: its business key's entry is kept


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
        timeline_maxlen: int = 200,
        durability: Durability | None = None,
    ) -> None:
        self._redis = client
        self._durability = durability
        self._prefix = prefix
        self._lock_ttl_ms = lock_ttl_ms
        self._ledger_ttl_s = ledger_ttl_s
        self._outcome_maxlen = outcome_maxlen
        self._timeline_maxlen = timeline_maxlen
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
            keys.grants(self._prefix, client_id),
        ]
        args = [token, self._lock_ttl_ms, OUTCOME_FIELD, self._ledger_ttl_s * 1000, event_key]
        args += [keys.ledger(self._prefix, ""), GRANTS_CHECKED]
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
            dangling = tuple(
                Dangling(Grant.parse(member), StepRecord.decode(raw), _text(raw))
                for member, raw in zip(reply[4][::2], reply[4][1::2], strict=True)
            )
        except (ValueError, KeyError, TypeError):
            self.release(event_key, client_id, token)  # unreadable records: don't block the client
            raise
        return Opened(status, int(reply[1]), state, ledger, dangling=dangling)

    def begin_step(self, begin: BeginStep) -> tuple[bool, Claim]:
        """Record the previous step's result, renew the lease, claim the business key and mark
        the step in progress (or a duplicate of the key's owner); return (lease held, claim)."""
        ledger_key = keys.ledger(self._prefix, begin.event_key)
        keys_ = [
            keys.lock(self._prefix, begin.client_id),
            ledger_key,
            *business_redis_keys(self._prefix, begin.business_key),
            keys.dead_letters(self._prefix),
            keys.grants(self._prefix, begin.client_id),
            keys.business_keys(self._prefix, begin.client_id),
        ]
        duplicate = StepRecord(StepState.DONE, begin.token, begin.record.at_ms)
        args = [
            begin.token,
            self._lock_ttl_ms,
            begin.step,
            begin.record.encode(),
            begin.event_key,
            self._ledger_ttl_s,
            begin.amount,
            duplicate.encode(),
            keys.ledger(self._prefix, ""),
            OUTCOME_FIELD,
            *_done_args(begin.done),
            Grant(begin.event_key, begin.step, begin.amount).member,
            GRANTS_KEPT,
            begin.business_key,
        ]
        held, status, owner, amount, reason = self._run(_BEGIN_STEP, keys_, args)
        if not held:
            return False, Claim("")
        claim = Claim(
            _text(owner), int(amount) if amount else None, ClaimStatus(_text(status)), _text(reason)
        )
        if claim.status == ClaimStatus.CLAIMED and self._durability is not None:
            self._durability.wait(self._scripts.connection())  # kept before the grant is sent
        return True, claim

    def renew(self, event_key: str, client_id: str, token: str, done: StepDone | None,
              ttl_ms: int = 0) -> bool:  # fmt: skip
        """Record the last step's `done`, renew the lease (`ttl_ms`: the fence's); False if lost."""
        ttl = ttl_ms or self._lock_ttl_ms
        return self._renew_for(event_key, client_id, token, done, ttl, False)

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

    def clear_step(self, event_key: str, step: str) -> None:
        """Forget a step proven not applied (or never sent), so the next attempt runs it afresh.
        The business key stays with the event while it may still grant (see `release_claim`)."""
        try:
            self._redis.hdel(keys.ledger(self._prefix, event_key), step)
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"could not clear step {step}: {exc}") from exc

    def grants_since(
        self, client_id: str, judged: Grant
    ) -> list[tuple[Grant, StepState | None]] | None:
        """The client's other grants that began after `judged`, each with its ledger state (None:
        no record: not applied, or forgotten); None if `judged` is not in the client's record."""
        args = [judged.member, keys.ledger(self._prefix, "")]
        found, *flat = self._run(_GRANTS_SINCE, [keys.grants(self._prefix, client_id)], args)
        if not found:
            return None
        return [
            (Grant.parse(member), None if _text(state) == "none" else StepState(_text(state)))
            for member, state in zip(flat[::2], flat[1::2], strict=True)
        ]

    def settle(self, dangling: Dangling, record: StepRecord | None) -> bool:
        """Settle another event's dangling grant in its ledger: `record` (done), or None to forget
        it (proven not applied: that event sends it again). False if its record changed."""
        grant = dangling.grant
        args = [grant.step, dangling.raw, record.encode() if record else ""]
        return bool(self._run(_SETTLE, [keys.ledger(self._prefix, grant.event_key)], args))

    def release_claim(
        self, event_key: str, step: str, business_key: str, done: StepDone | None = None
    ) -> bool:
        """Record the last step's `done`; give back `business_key` if this event holds it and its
        grant never took effect (no ledger record of `step`). True if given back."""
        keys_ = [
            keys.ledger(self._prefix, event_key),
            *business_redis_keys(self._prefix, business_key),
        ]
        return bool(self._run(_RELEASE_CLAIM, keys_, [event_key, step, *_done_args(done)]))

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
            keys.timeline(self._prefix, client_id),
            keys.business_keys(self._prefix, client_id),
        ]
        args: list[Any] = [
            token,
            OUTCOME_FIELD,
            _finished_as(finish.outcome),
            finish.state.model_dump_json() if finish.state else "",
            self._ledger_ttl_s,
            self._outcome_maxlen,
            event_key,
            finish.dead_letter or "",
            now_ms,
            finish.outcome.get("reason") or "",
            *_done_args(done),
            *_grant_args(finish.grant),
            *self._recorded(finish.outcome),
        ]
        return bool(self._run(_FINISH, keys_, args))

    def record_duplicate(self, client_id: str, outcome: dict[str, Any]) -> None:
        """Append a duplicate delivery's outcome to the stream and the client's timeline (no
        lock: nothing else changes)."""
        keys_ = [keys.outcomes(self._prefix), keys.timeline(self._prefix, client_id)]
        self._run(_DUPLICATE, keys_, [self._outcome_maxlen, *self._recorded(outcome)])

    def _recorded(self, outcome: dict[str, Any]) -> list[Any]:
        """The trailing arguments of the scripts that record an outcome: its timeline item, the
        timeline's cap, then its stream field/value pairs."""
        fields = [item for pair in _stream_fields(outcome).items() for item in pair]
        return [_json(outcome), self._timeline_maxlen, *fields]

    def release(self, event_key: str, client_id: str, token: str) -> None:
        """Give the lease back early (before a delayed retry); harmless if it already expired."""
        keys_ = [keys.lock(self._prefix, client_id), keys.deliveries(self._prefix, event_key)]
        self._run(_RELEASE, keys_, [token])

    def record_unlocked(self, event_key: str, outcome: dict[str, Any], dead_letter: str) -> None:
        """Dead-letter an event without its client's lease (it failed validation, or a bug of
        ours failed it); its outcome goes on its client's timeline when it names a client."""
        ledger_key = keys.ledger(self._prefix, event_key)
        client_id = outcome.get("client_id")
        keys_ = [
            keys.dead_letters(self._prefix),
            keys.dead_letter_index(self._prefix),
            keys.dead_letter_counts(self._prefix),
            ledger_key,
            keys.outcomes(self._prefix),
            keys.timeline(self._prefix, client_id) if client_id else ledger_key,
        ]
        args = [event_key, dead_letter, outcome["at_ms"], outcome["reason"], OUTCOME_FIELD]
        args += [_finished_as(outcome), self._ledger_ttl_s, self._outcome_maxlen]
        args += self._recorded(outcome)
        self._run(_DEAD_LETTER_UNLOCKED, keys_, args)

    def _run(self, script: LuaScript, keys_: list[str], args: list[Any]) -> Any:
        try:
            return self._scripts(script, keys_, args)
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"Redis failed during an attempt: {exc}") from exc


def business_redis_keys(prefix: str, business_key: str) -> list[str]:
    """The Redis keys of a business key: its owner and its claimed amount (they expire)."""
    kind, _, business_id = business_key.partition(":")
    return [
        keys.business(prefix, kind, business_id),
        keys.business_amount(prefix, kind, business_id),
    ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _finished(raw: bytes) -> Outcome:
    """How a finished event ended, from its ledger's outcome mark."""
    return Outcome(json.loads(raw)["outcome"])


def _finished_as(outcome: dict[str, Any]) -> str:
    """The ledger's outcome mark: `{"outcome": ...}` (the full record is in the outcome stream)."""
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
