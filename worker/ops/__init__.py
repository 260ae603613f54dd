"""Operations: one service layer for operators, used by the CLI and the console alike.

Each function takes its dependencies (a `redis.Redis`, the key prefix, a `Publisher`) and
returns typed values with `to_json()`; nothing here prints or knows typer.

- `filters`: `DeadLetterFilter.parse(...)` / `.matches(letter)`; `InvalidInput` for bad input.
- `listing`: `list_dead_letters(...) -> DeadLetterPage`, `get_letters`, `matching`.
- `clusters`: `summarize(...) -> Summary` (failure clusters).
- `plans`: `select(...) -> Selection`, `plan(...) -> Plan` (read-only preview).
- `jobs`: `Runner(...).run(plan, operator=...) -> JobResult`; `list_jobs`, `get_job`,
  `cancel_job`, `running_jobs`; `gc_paused` for bulk work in short-lived processes.
- `replay`: `replay(...)` of one dead letter (a job of one).
- `status`: `read_status(...) -> Status`; `api_health(...) -> ApiHealth` (the API circuit).
- `timeline`: `client_story`, `event_story`.
- `audit`: `record(...)`, `list_audit(...)`, `operator_name(...)`.
- `export`: `export_to`, `export_lines`, `import_from`, `read_export`.
- `index`: the operators' secondary index of dead letters (kept by the functions above).
- `dead_letters`, `outcomes`, `metrics`, `supervisor`: the worker-side primitives.
"""
