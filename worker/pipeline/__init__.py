"""The per-event engine: broker and actor, executor, steps and evidence, retry decisions, the
idempotency ledger and the attempt's Redis scripts, publishing. It never imports `worker.ops`:
operators' code observes it through small interfaces (an outcome observer)."""
