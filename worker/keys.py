"""Every Redis key subaccount-worker owns, in one place. All start with the configured prefix.

| key | type | holds |
|---|---|---|
| `{p}:ledger:{event_id}` | hash | step name → JSON ledger record (in progress / done) |
| `{p}:business:{kind}:{id}` | string | key of the event that owns a business effect (an invoice) |
| `{p}:business-amount:{kind}:{id}` | string | `<event key> <amount>`: what it was claimed for |
| `{p}:business-keys:{client_id}` | hash | business key → `<event> <amount>[ held]`, no expiry |
| `{p}:client:{client_id}` | string | JSON of what is known of a client (status, event times) |
| `{p}:lock:{client_id}` | string | per-client lease: holder token, with expiry |
| `{p}:deliveries:{event_id}` | string | deliveries of an event that reached no outcome yet |
| `{p}:dead` | hash | event id → JSON dead letter |
| `{p}:dead:index` | zset | event id scored by last failure time (ms) |
| `{p}:dead:counts` | hash | reason → number of dead letters (for the metrics gauge) |
| `{p}:dead:ix:{dim}:{value}` | zset | operators' index of one reason/type/client/cluster |
| `{p}:dead:ix:of` | hash | event id → the index entries it is in (so moving it is exact) |
| `{p}:dead:ix:clusters` | set | cluster names that have an index (summary without a scan) |
| `{p}:dead:ix:mark` | string | failure time (ms) up to which the operators' index is built |
| `{p}:dead:ix:lex:all` | zset | `value\0dim\0id` of each dead letter's ids (prefix search) |
| `{p}:dead:ix:word:{word}` | zset | dead letters whose detail has this word, by failure ms |
| `{p}:dead:ix:query:{sha1}` | zset | one search's candidates, for a few seconds |
| `{p}:dead:claim:{event_id}` | string | a replay/purge's short claim on a dead letter |
| `{p}:replays` | hash | event id → times it was replayed (the message option `replay`) |
| `{p}:ops:jobs` | zset | replay/purge job ids by start time (ms) |
| `{p}:ops:job:{id}` | hash | one job: filter, ids, operator, times, counts, cancel flag |
| `{p}:ops:job:{id}:pending` | set | a replay job's events that have not ended yet |
| `{p}:ops:job:{id}:again` | set | a replay job's events that were dead-lettered again |
| `{p}:ops:outcomes:minute:{m}` / `:hour:{h}` | hash | outcome → count of one minute / hour |
| `{p}:ops:api:minute:{m}` | hash | API call result → count of one minute, and `ms` summed |
| `{p}:ops:audit` | stream | operators' actions, capped |
| `{p}:console:plan:{id}` | string | a console preview's ids and digests, for its confirm |
| `{p}:console:session:{id}` | hash | a console session: user, role, token fingerprint, times |
| `{p}:console:sessions:{user}` | set | the session ids of one console user (log out everywhere) |
| `{p}:console:login:{kind}:{who}` | hash | failed logins of one address or user, and the wait |
| `{p}:outcomes` | stream | one entry per finished event, capped |
| `{p}:timeline:{client}` | list | a client's outcomes and operator actions, newest first (capped) |
| `{p}:grants:{client}` | zset | a client's recent grants (`<event> <step> <amount>`) by start ms |
| `{p}:ratelimit:api` | hash | shared token bucket of the API client |
| `{p}:circuit:{op}` | hash | an open API circuit of one operation: since, next probe, last error |
| `{p}:circuit:open` | zset | operations whose circuit is open, by opening time (ms) |
| `{p}:circuit:fails:{op}` | zset | an operation's systemic failures in the window, by time (ms) |
| `{p}:circuit:clients:{op}` | zset | clients with such a failure in the window, by time (ms) |
| `{p}:circuit:last` | hash | operation → JSON of its last closed outage (since, closed, ...) |
| `{p}:credits:snapshots` | hash | username → JSON of its latest credit snapshot |
| `{p}:credits:history:{username}` | list | newest first: JSON snapshots of one subaccount, capped |
| `{p}:credits:rules` | hash | client id → JSON of its low-credit rule (overrides of the defaults) |
| `{p}:credits:alerts` | hash | username → JSON of its low-credit alert state |
| `{p}:credits:alert-log:{username}` | list | newest first: JSON of each alert change, capped |
| `{p}:credits:notifications` | stream | one entry per credit notification, capped |
| `{p}:credits:drift` | hash | `kind:username` → JSON drift record (open drift, deduplicated) |
| `{p}:credits:scan` | hash | figures of the last scan (started, finished, scanned, ...) |
| `{p}:credits:digest` | hash | when the last low-credit digest was due |
| `{p}:credits:lease` | string | monitor leader lease: holder token, with expiry |
| `{p}:dramatiq:*` | (Dramatiq) | the queue, delay queue, acks, heartbeats, Dramatiq's own XQ |

Dramatiq's keys are in database `BROKER_REDIS_DB` (worker/pipeline/keyspace.py), the rest in the
database of REDIS_URL.
"""

from __future__ import annotations


def ledger(prefix: str, event_id: str) -> str:
    return f"{prefix}:ledger:{event_id}"


def business(prefix: str, kind: str, business_id: str) -> str:
    return f"{prefix}:business:{kind}:{business_id}"


def business_amount(prefix: str, kind: str, business_id: str) -> str:
    return f"{prefix}:business-amount:{kind}:{business_id}"


def business_keys(prefix: str, client_id: str) -> str:
    """A client's business keys for its life (no expiry): grants done, and those a dead letter
    holds undecided; the owner/amount keys above expire with the ledger."""
    return f"{prefix}:business-keys:{client_id}"


def client(prefix: str, client_id: str) -> str:
    return f"{prefix}:client:{client_id}"


def lock(prefix: str, client_id: str) -> str:
    return f"{prefix}:lock:{client_id}"


def in_doubt(prefix: str, client_id: str) -> str:
    """Until when (ms) a call of the client is in doubt: its other events wait that long."""
    return f"{prefix}:indoubt:{client_id}"


def deliveries(prefix: str, event_id: str) -> str:
    return f"{prefix}:deliveries:{event_id}"


def dead_letters(prefix: str) -> str:
    return f"{prefix}:dead"


def dead_letter_index(prefix: str) -> str:
    return f"{prefix}:dead:index"


def dead_letter_counts(prefix: str) -> str:
    return f"{prefix}:dead:counts"


def outcomes(prefix: str) -> str:
    return f"{prefix}:outcomes"


def timeline(prefix: str, client_id: str) -> str:
    """Per-client index of outcomes (newest first, capped) so a client's history needs no scan."""
    return f"{prefix}:timeline:{client_id}"


def grants(prefix: str, client_id: str) -> str:
    """The grants this system started for a client (capped), to judge evidence against."""
    return f"{prefix}:grants:{client_id}"


def rate_limit(prefix: str) -> str:
    return f"{prefix}:ratelimit:api"


def dramatiq_namespace(prefix: str) -> str:
    """Namespace of Dramatiq's own keys (queues, acks, heartbeats, its XQ)."""
    return f"{prefix}:dramatiq"


def dramatiq_queue(prefix: str, queue_name: str) -> str:
    """Dramatiq's Redis list of message ids of a queue (its messages hash adds `.msgs`)."""
    return f"{dramatiq_namespace(prefix)}:{queue_name}"


def credit_snapshots(prefix: str) -> str:
    return f"{prefix}:credits:snapshots"


def credit_history(prefix: str, username: str) -> str:
    return f"{prefix}:credits:history:{username}"


def credit_alerts(prefix: str) -> str:
    return f"{prefix}:credits:alerts"


def credit_alert_log(prefix: str, username: str) -> str:
    return f"{prefix}:credits:alert-log:{username}"


def credit_notifications(prefix: str) -> str:
    return f"{prefix}:credits:notifications"


def credit_drift(prefix: str) -> str:
    return f"{prefix}:credits:drift"


def credit_scan(prefix: str) -> str:
    return f"{prefix}:credits:scan"


def credit_lease(prefix: str) -> str:
    return f"{prefix}:credits:lease"


def credit_rules(prefix: str) -> str:
    return f"{prefix}:credits:rules"


def dead_letter_ix(prefix: str, dim: str, value: str) -> str:
    """Operators' secondary index of dead letters sharing one `dim` value (zset by failure ms)."""
    return f"{prefix}:dead:ix:{dim}:{value}"


def dead_letter_ix_of(prefix: str) -> str:
    return f"{prefix}:dead:ix:of"


def dead_letter_ix_clusters(prefix: str) -> str:
    return f"{prefix}:dead:ix:clusters"


def dead_letter_ix_mark(prefix: str) -> str:
    return f"{prefix}:dead:ix:mark"


def dead_letter_claim(prefix: str, event_id: str) -> str:
    return f"{prefix}:dead:claim:{event_id}"


def replays(prefix: str) -> str:
    return f"{prefix}:replays"


def ops_jobs(prefix: str) -> str:
    return f"{prefix}:ops:jobs"


def ops_job(prefix: str, job_id: str) -> str:
    return f"{prefix}:ops:job:{job_id}"


def audit(prefix: str) -> str:
    return f"{prefix}:ops:audit"


def console_plan(prefix: str, plan_id: str) -> str:
    """What a console preview planned (ids and record digests), kept for its confirm (expires)."""
    return f"{prefix}:console:plan:{plan_id}"


def console_session(prefix: str, session_id: str) -> str:
    """One console session (expires after the idle timeout)."""
    return f"{prefix}:console:session:{session_id}"


def console_user_sessions(prefix: str, user: str) -> str:
    """The session ids of one console user, so an admin can end them all."""
    return f"{prefix}:console:sessions:{user}"


def console_login_failures(prefix: str, kind: str, who: str) -> str:
    """Failed logins of one client address (`addr`) or user name (`user`)."""
    return f"{prefix}:console:login:{kind}:{who}"


def circuit(prefix: str, operation: str) -> str:
    """An open API circuit of one operation (absent while closed)."""
    return f"{prefix}:circuit:{operation}"


def circuit_open(prefix: str) -> str:
    return f"{prefix}:circuit:open"


def circuit_failures(prefix: str, operation: str) -> str:
    return f"{prefix}:circuit:fails:{operation}"


def circuit_clients(prefix: str, operation: str) -> str:
    return f"{prefix}:circuit:clients:{operation}"


def circuit_last(prefix: str) -> str:
    return f"{prefix}:circuit:last"
