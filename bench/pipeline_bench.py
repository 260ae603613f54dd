"""Events per second of the full pipeline beside a bare Dramatiq actor, on the same sandbox.

Both sides run as real processes with the same processes x threads against one sandbox (its own
process) and one Redis server, all started here on loopback:

- pipeline: K `client.onboarded` events for K distinct clients (one create call each) are
  published first, then `subaccount-worker worker --processes P --threads T` consumes them
  (logging at WARNING). Completions are the entries of the outcome stream (`saw:outcomes`).
- bare: K messages for `bench.bare_actor` (one plain httpx create call each, then `INCR`) are
  enqueued first, then `python -m dramatiq bench.bare_actor -p P -t T` consumes them.

The rate is measured from the first completion to the last (worker start-up is not counted), by
the same polling loop for both sides. Runs of the two sides alternate, so a noisy neighbour hurts
both. Also shown: `invoice.paid` for pre-onboarded clients (two calls: the credit-details read
kept as evidence, then the grant) and one onboarded run at INFO with JSON logs to /dev/null.

    python -m bench.pipeline_bench            # ~2 minutes
    python -m bench.pipeline_bench --quick    # a smoke run of a few seconds
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dramatiq
import redis

from bench.common import (
    API_KEY,
    BARE_ACTOR,
    BARE_DONE_KEY,
    BARE_FAILED_KEY,
    BARE_NAMESPACE,
    BARE_QUEUE,
    REPO,
    Figure,
    Proc,
    Services,
    base_parser,
    group_cpu_s,
    print_table,
    progress,
    run_main,
    services,
)
from handlers import username_for
from handlers.plan import ClientState, Lifecycle
from tests import factories
from worker import keys
from worker.api.models import CreditType
from worker.publish import Publisher
from worker.settings import ENV_PREFIX, load_settings

CpuUse = dict[str, float]
PREFIX = "saw"
PUBLISH_BATCH = 500
STARTUP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Case:
    latency_ms: int
    processes: int
    threads: int
    events: int  # K: sized so a bare run lasts ~5 s

    @property
    def label(self) -> str:
        return f"{self.latency_ms} ms, {self.processes}x{self.threads}"


CASES = (Case(0, 1, 8, 4000), Case(100, 1, 64, 2500))
QUICK_CASES = (Case(0, 1, 8, 300), Case(100, 1, 64, 300))


@dataclass(frozen=True)
class Limits:
    cap_s: float  # a run stops counting this long after its first completion


@dataclass(frozen=True)
class RunResult:
    rate: float  # completions per second, first to last
    done: int
    seconds: float
    partial: bool  # the cap ended the run before every message completed
    cpu_ms: dict[str, float]  # CPU ms per completion, by process, over the same interval
    detail: str = ""  # outcomes seen, errors, cross-checks

    def with_detail(self, detail: str) -> RunResult:
        return dataclasses.replace(self, detail=detail)


@dataclass
class Row:
    """The figures of one case."""

    case: Case
    bare: Figure = field(default_factory=Figure)
    pipeline: Figure = field(default_factory=Figure)
    invoice: Figure = field(default_factory=Figure)
    info: Figure = field(default_factory=Figure)
    ratios: list[float] = field(default_factory=list)


# --- completion watching ----------------------------------------------------------------------


def watch(
    count: Callable[[], int], total: int, proc: Proc, limits: Limits, cpu: Callable[[], CpuUse]
) -> RunResult:
    """Poll `count` until it reaches `total`; the rate from the first completion seen to the last.

    Completions before the first poll that sees any are not counted in the rate (n_first), so a
    slow start-up never dilutes it; `cpu` is sampled at the same two moments.
    """
    started = time.perf_counter()
    first_t = 0.0
    first_n = 0
    cpu_first: CpuUse = {}
    while True:
        n = count()
        now = time.perf_counter()
        if n and not first_t:
            first_t, first_n, cpu_first = now, n, cpu()
        if n >= total or (first_t and now - first_t > limits.cap_s):
            break
        if not first_t and now - started > STARTUP_TIMEOUT_S:
            raise RuntimeError(f"{proc.name}: no completion after {STARTUP_TIMEOUT_S:.0f}s")
        proc.check_alive()
        time.sleep(0.005)
    cpu_last = cpu()
    seconds = now - first_t
    counted = n - first_n
    rate = counted / seconds if seconds > 0 else float("nan")
    per_event = {k: 1000 * (cpu_last[k] - cpu_first[k]) / max(counted, 1) for k in cpu_last}
    return RunResult(rate, n, seconds, partial=n < total, cpu_ms=per_event)


# --- the two sides ----------------------------------------------------------------------------


class Bench:
    """The shared servers and what every run needs from them."""

    def __init__(self, svc: Services, limits: Limits) -> None:
        self.svc = svc
        self.limits = limits
        self.redis = redis.Redis.from_url(svc.redis_url)
        self.settings = load_settings(
            redis_url=svc.redis_url, api_base_url=svc.api_url, api_key=API_KEY, key_prefix=PREFIX
        )
        self.publisher = Publisher(self.redis, self.settings)
        self.runs = 0

    def cpu(self, proc: Proc) -> Callable[[], CpuUse]:
        """A probe of the CPU seconds used so far by the worker's processes and the servers."""
        return lambda: {"worker": group_cpu_s(proc.pid), **self.svc.server_cpu_s()}

    def reset(self, latency_ms: int) -> None:
        """Empty Redis (ours: started by this benchmark) and the sandbox; set the latency."""
        self.redis.flushall()
        self.svc.admin.reset()
        self.svc.latency(latency_ms)
        self.runs += 1

    def client_ids(self, count: int) -> list[str]:
        return [f"bench-{self.runs}-{i:05d}" for i in range(count)]

    def publish(self, events: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(events), PUBLISH_BATCH):
            self.publisher.publish_many(events[start : start + PUBLISH_BATCH])

    # --- pipeline -----------------------------------------------------------------------------

    def pipeline(
        self, case: Case, *, kind: str = "onboarded", log_level: str = "WARNING"
    ) -> RunResult:
        self.reset(case.latency_ms)
        clients = self.client_ids(case.events)
        if kind == "onboarded":
            events = [factories.onboarded(cid) for cid in clients]
        else:
            self.onboard_directly(clients)
            events = [factories.invoice_paid(cid, f"inv-{cid}", 10) for cid in clients]
        self.publish(events)
        name = f"worker-{self.runs}"
        quiet = log_level == "WARNING"
        proc = Proc(
            name,
            [*cli(), "worker", "--processes", str(case.processes), "--threads", str(case.threads)],
            env=self.worker_env(log_level, name),
            output=self.svc.workdir / f"{name}.log" if quiet else None,  # INFO: to /dev/null
        )
        stream = keys.outcomes(PREFIX)
        with running(proc):
            result = watch(
                lambda: int(self.redis.xlen(stream)), case.events, proc, self.limits, self.cpu(proc)
            )
        return self.check_outcomes(result, proc)

    def worker_env(self, log_level: str, name: str) -> dict[str, str]:
        values = {
            "REDIS_URL": self.svc.redis_url,
            "API_BASE_URL": self.svc.api_url,
            "API_KEY": API_KEY,
            "KEY_PREFIX": PREFIX,
            "LOG_LEVEL": log_level,
            "LOG_FORMAT": "json",
            "METRICS_PORT": "0",  # counters are still kept (multiprocess files); no HTTP server
            "METRICS_DIR": str(self.svc.workdir / f"metrics-{name}"),
        }
        return {f"{ENV_PREFIX}{key}": value for key, value in values.items()}

    def onboard_directly(self, clients: Sequence[str]) -> None:
        """Clients known to both sides already: a subaccount in the sandbox, state in Redis."""
        accounts = {}
        pipe = self.redis.pipeline(transaction=False)
        for cid in clients:
            username = username_for(cid)
            email = f"{cid}@example.com"
            accounts[username] = {"email": email, "credit_type": "one_time_credit", "balance": 0}
            state = ClientState(
                client_id=cid,
                lifecycle=Lifecycle.ACTIVE,
                username=username,
                email=email,
                credit_type=CreditType.ONE_TIME_CREDIT,
            )
            pipe.set(keys.client(PREFIX, cid), state.model_dump_json())
        pipe.execute()
        self.svc.admin.set_state({"subaccounts": accounts})

    def check_outcomes(self, result: RunResult, proc: Proc) -> RunResult:
        """Every outcome should be `applied`; cross-check the rate with the records' `at_ms`."""
        entries = self.redis.xrange(keys.outcomes(PREFIX))
        outcomes = Counter(fields[b"outcome"].decode() for _id, fields in entries)
        stamps = sorted(int(fields[b"at_ms"]) for _id, fields in entries)
        detail = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        if len(stamps) > 1 and stamps[-1] > stamps[0]:
            at_rate = (len(stamps) - 1) * 1000 / (stamps[-1] - stamps[0])
            detail += f"; at_ms rate {at_rate:.0f}/s"
        if set(outcomes) != {"applied"}:
            detail += f"; NOT ALL APPLIED (see {proc.output})"
        return result.with_detail(detail)

    # --- bare ---------------------------------------------------------------------------------

    def bare(self, case: Case) -> RunResult:
        self.reset(case.latency_ms)
        usernames = [f"bare-{self.runs}-{i:05d}" for i in range(case.events)]
        enqueue_bare(self.redis, usernames)
        name = f"bare-{self.runs}"
        argv = [
            sys.executable, "-m", "dramatiq", "bench.bare_actor",
            "--processes", str(case.processes), "--threads", str(case.threads),
            "--queues", BARE_QUEUE,
            "--skip-logging",  # as the pipeline's supervisor does (else httpx logs every call)
        ]  # fmt: skip
        env = {
            "BENCH_BARE_REDIS_URL": self.svc.redis_url,
            "BENCH_BARE_API_URL": self.svc.api_url,
            "BENCH_BARE_API_KEY": API_KEY,
            "BENCH_BARE_THREADS": str(case.threads),
        }
        proc = Proc(name, argv, env=env, output=self.svc.workdir / f"{name}.log")

        def count() -> int:
            done, failed = self.redis.mget(BARE_DONE_KEY, BARE_FAILED_KEY)
            return int(done or 0) + int(failed or 0)

        with running(proc):
            result = watch(count, case.events, proc, self.limits, self.cpu(proc))
        failed = int(self.redis.get(BARE_FAILED_KEY) or 0)
        journal = len(self.svc.admin.journal(operation="create"))
        detail = f"sandbox journal {journal} creates" + (f"; {failed} FAILED" if failed else "")
        return result.with_detail(detail)


def enqueue_bare(client: redis.Redis, usernames: Sequence[str]) -> None:
    """Write the bare actor's messages in Dramatiq's Redis layout (what `actor.send` writes)."""
    queue = f"{BARE_NAMESPACE}:{BARE_QUEUE}"
    for start in range(0, len(usernames), PUBLISH_BATCH):
        pipe = client.pipeline(transaction=False)
        for username in usernames[start : start + PUBLISH_BATCH]:
            message = dramatiq.Message(
                queue_name=BARE_QUEUE,
                actor_name=BARE_ACTOR,
                args=(username,),
                kwargs={},
                options={"redis_message_id": str(uuid.uuid4())},
            )
            redis_id = message.options["redis_message_id"]
            pipe.hset(f"{queue}.msgs", redis_id, message.encode())
            pipe.rpush(queue, redis_id)
        pipe.execute()


def cli() -> list[str]:
    """`subaccount-worker` as installed beside this interpreter (or the module, if not)."""
    script = Path(sys.executable).with_name("subaccount-worker")
    return [str(script)] if script.exists() else [sys.executable, "-m", "worker.cli"]


@contextlib.contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    """Start `proc`; stop its process group on the way out, whatever happened."""
    try:
        yield proc.start()
    finally:
        proc.stop()


# --- the run ----------------------------------------------------------------------------------


def run_case(bench: Bench, case: Case, runs: int) -> Row:
    row = Row(case)
    for run in range(runs):
        bare = bench.bare(case)
        row.bare.add(bare.rate, note_of(bare))
        progress(f"{case.label} run {run + 1}: bare {describe(bare)}")
        onboarded = bench.pipeline(case)
        row.pipeline.add(onboarded.rate, note_of(onboarded))
        row.ratios.append(onboarded.rate / bare.rate)
        progress(f"{case.label} run {run + 1}: pipeline onboarded {describe(onboarded)}")
        invoice = bench.pipeline(case, kind="invoice")
        row.invoice.add(invoice.rate, note_of(invoice))
        progress(f"{case.label} run {run + 1}: pipeline invoice.paid {describe(invoice)}")
    info = bench.pipeline(case, log_level="INFO")
    row.info.add(info.rate, note_of(info))
    progress(f"{case.label}: pipeline onboarded at INFO {describe(info)}")
    return row


def describe(result: RunResult) -> str:
    text = f"{result.rate:.0f}/s ({result.done} in {result.seconds:.1f} s"
    text += ", PARTIAL)" if result.partial else ")"
    text += "; CPU ms/event " + ", ".join(f"{k} {v:.2f}" for k, v in result.cpu_ms.items())
    return f"{text}; {result.detail}" if result.detail else text


def note_of(result: RunResult) -> str:
    return "partial (time cap)" if result.partial else ""


def report(rows: Sequence[Row]) -> None:
    headers = [
        "case", "bare ev/s", "runs", "pipeline ev/s", "runs", "ratio", "per-run ratios",
        "invoice ev/s", "runs", "INFO ev/s",
    ]  # fmt: skip
    table = []
    for row in rows:
        table.append(
            [
                row.case.label,
                f"{row.bare.median:.0f}",
                row.bare.runs(),
                f"{row.pipeline.median:.0f}",
                row.pipeline.runs(),
                f"{row.pipeline.median / row.bare.median:.2f}x",
                " / ".join(f"{r:.2f}" for r in row.ratios),
                f"{row.invoice.median:.0f}",
                row.invoice.runs(),
                f"{row.info.median:.0f}",
            ]
        )
    print_table(
        "Full pipeline vs bare Dramatiq actor (events/s, first to last completion)", headers, table
    )
    print(
        "\nbare = one httpx create per message (bench.bare_actor); pipeline = client.onboarded,"
        "\none create each, log level WARNING; invoice = invoice.paid for onboarded clients"
        "\n(credit-details read + grant: 2 calls); INFO = pipeline onboarded, JSON logs to"
        "\n/dev/null. ratio = pipeline median / bare median (goal >= 0.80)."
    )
    for row in rows:
        for label, figure in (("bare", row.bare), ("pipeline", row.pipeline)):
            if figure.notes:
                print(f"note: {row.case.label} {label}: {', '.join(figure.notes)}")


def main() -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "pipeline benchmark")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 2)
    limits = Limits(cap_s=3.0 if args.quick else 12.0)
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        del os.environ[key]  # the workers get exactly the settings given here
    started = time.monotonic()
    with services(with_redis=True) as svc:
        bench = Bench(svc, limits)
        rows = [run_case(bench, case, runs) for case in (QUICK_CASES if args.quick else CASES)]
        bench.redis.close()
    report(rows)
    print(f"\n{runs} run(s) per figure (1 at INFO); took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    run_main(main)
