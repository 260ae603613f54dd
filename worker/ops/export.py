"""Export dead letters as JSON Lines (redacted) and import them back, e.g. between environments.

One line per dead letter: the `DeadLetter` record's fields (full event, reason, detail, step,
attempts, readings, failure times in ms) plus `first_failed_at`/`last_failed_at` (RFC 3339).
Secret-looking fields and the configured secrets are redacted on the way out. Import validates
every line first (a bad line: InvalidInput naming it, nothing written), then writes in batches;
a dead letter already present is left as it is (the import is safe to run twice). A dead letter
carries its own truth (`ledger`: its steps' records; `holds`: its entries in its client's
business keys), so an import into a fresh Redis puts its holds back in the client's business
keys (where none is recorded yet) and its replay repeats no done step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Any

import redis

from worker import keys
from worker.log import redactor
from worker.ops import audit
from worker.ops.filters import DeadLetterFilter, InvalidInput, rfc3339
from worker.ops.index import DeadLetterIndex
from worker.ops.listing import matching
from worker.pipeline.outcomes import DeadLetter

BATCH = 500
_FIELDS = {f.name for f in fields(DeadLetter)}
# KEYS: dead hash, dead index, dead counts. ARGV: (key, record, last failure ms, reason)*.
_IMPORT = """
local dead, index, counts = KEYS[1], KEYS[2], KEYS[3]
local written = 0
for i = 1, #ARGV, 4 do
  local key, record, at_ms, reason = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('HSETNX', dead, key, record) == 1 then
    redis.call('ZADD', index, at_ms, key)
    redis.call('HINCRBY', counts, reason, 1)
    written = written + 1
  end
end
return written
"""


@dataclass(frozen=True)
class ImportResult:
    imported: int
    present: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def export_lines(client: redis.Redis, prefix: str, flt: DeadLetterFilter) -> Iterator[str]:
    """One redacted JSON line per matching dead letter, newest first."""
    for letter in matching(client, prefix, flt):
        record = redactor.scrub({**asdict(letter), "holds": {}})
        # business keys name invoices and clients ("onboarding:compass"): not secret-named keys
        record["holds"] = {k: redactor.scrub(v) for k, v in letter.holds.items()}
        record["first_failed_at"] = rfc3339(letter.first_failure_ms)
        record["last_failed_at"] = rfc3339(letter.last_failure_ms)
        yield json.dumps(record, separators=(",", ":"), default=str)


def export_to(
    client: redis.Redis,
    prefix: str,
    flt: DeadLetterFilter,
    path: Path,
    operator: str,
    stream: IO[str] | None = None,
) -> int:
    """Write the export to `stream`, or to `path`; return how many; audited."""
    count = 0
    try:
        handle = stream or path.open("w", encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None
    try:
        for line in export_lines(client, prefix, flt):
            handle.write(line + "\n")
            count += 1
    finally:
        if stream is None:
            handle.close()
    audit.record(client, prefix, "export", operator, filter=flt.to_json(), result={"count": count})
    return count


def read_export(path: Path) -> list[DeadLetter]:
    """Every dead letter of an export file; InvalidInput names the first bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from None
    letters: list[DeadLetter] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            record = {k: v for k, v in data.items() if k in _FIELDS}
            letters.append(DeadLetter.decode(json.dumps(record)))
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"{path} line {number}: not a dead letter ({exc})"[:300]) from None
        if not isinstance(data.get("event"), dict) or not data.get("key"):
            raise InvalidInput(f"{path} line {number}: a dead letter needs `key` and `event`")
        if not all(_texts(getattr(letters[-1], name)) for name in ("ledger", "holds")):
            raise InvalidInput(f"{path} line {number}: `ledger` and `holds` map text to text")
    if not letters:
        raise InvalidInput(f"{path} holds no dead letters")
    return letters


def import_from(client: redis.Redis, prefix: str, path: Path, operator: str) -> ImportResult:
    """Put the dead letters of an export back; those present already are left alone."""
    letters = read_export(path)
    script = client.register_script(_IMPORT)
    names = [
        keys.dead_letters(prefix),
        keys.dead_letter_index(prefix),
        keys.dead_letter_counts(prefix),
    ]
    written = 0
    for start in range(0, len(letters), BATCH):
        args: list[Any] = []
        for letter in letters[start : start + BATCH]:
            args += [letter.key, letter.encode(), letter.last_failure_ms, letter.reason]
        written += int(script(keys=names, args=args))
        _restore_holds(client, prefix, letters[start : start + BATCH])
        DeadLetterIndex(client, prefix).index_ids([x.key for x in letters[start : start + BATCH]])
    result = ImportResult(imported=written, present=len(letters) - written)
    ids = [letter.key for letter in letters]
    audit.record(client, prefix, "import", operator, ids=ids, result=result.to_json())
    return result


def _texts(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _restore_holds(client: redis.Redis, prefix: str, letters: list[DeadLetter]) -> None:
    """Put the letters' holds back in their clients' business keys, where none is recorded."""
    pipe = client.pipeline(transaction=True)
    for letter in letters:
        for business_key, entry in letter.holds.items():
            pipe.hsetnx(keys.business_keys(prefix, letter.client_id), business_key, entry)
    pipe.execute()
