"""Events per second of the full pipeline beside a bare Dramatiq actor, on the same sandbox.

Both sides run as real processes with the same processes x threads against one sandbox (its own
process) and one Redis server, all started here on loopback:

- pipeline: K `client.onboarded` events for K distinct clients (one create call each) are
  published first, then `subaccount-worker worker --processes P --threads T` consumes them
  (logging at WARNING). Completions are the entries of the outcome stream (`saw:outcomes`).
- bare: K messages for `bench.bare_actor` (one plain httpx create call each, then `INCR`) are
  enqueued first, then `python -m dramatiq bench.bare_actor -p P -t T` consumes them.
- bare on session: the same actor calling through the worker's own `HttpSession`, the HTTP path
  the pipeline uses; the pipeline's ratio to it is what everything but HTTP costs.

The rate is measured from the first completion to the last (worker start-up is not counted), by
the same polling loop for both sides, with the CPU each process spent per event over the same
interval. Runs of the two sides alternate, so a noisy neighbour hurts both. Also shown:
`invoice.paid` for pre-onboarded clients (two calls: the credit-details read kept as evidence,
then the grant) and one `client.onboarded` run at INFO with JSON logs to /dev/null.

    python -m bench.pipeline_bench            # ~2 minutes
    python -m bench.pipeline_bench --quick    # a smoke run of ~10 s
    python -m bench.pipeline_bench --pin      # workers on CPU 0, everything else on the rest

`bench.pipeline_compare` runs this tree's pipeline against another checkout's with `Bench`.

On 2 cores a worker process's threads bounce between the cores, which costs both sides 30-45%
more CPU per event (GIL hand-offs) and makes runs bimodal; `--pin` shows the figures without it.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
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
    CpuMeter,
    CpuUse,
    Figure,
    Proc,
    Services,
    base_parser,
    group_cpu_s,
    print_table,
    progress,
    run_main,
    services,
    split_cpus,
)
from handlers import examples, username_for
from handlers.plan import ClientState, Lifecycle
from handlers.requests import CreditType
from worker import keys
from worker.pipeline.publish import Publisher
from worker.settings import ENV_PREFIX, load_settings

PREFIX = "saw"
PUBLISH_BATCH = 500
STARTUP_TIMEOUT_S = 30.0
KINDS = ("bare", "onboarded", "bare_session", "invoice", "info")
BASE_KINDS = ("onboarded_base", "invoice_base")  # another checkout's (`bench.pipeline_compare`)


@dataclass(frozen=True)
class Case:
    latency_ms: int
    processes: int
    threads: int
    events: int  # K: a bare run lasts ~4 s, a pipeline run ~6-8 s

    @property
    def label(self) -> str:
        return f"{self.latency_ms} ms, {self.processes}x{self.threads}"

    def count(self, kind: str) -> int:
        """Events of a run of `kind`: invoice.paid makes two calls, so fewer of them."""
        return self.events * 2 // 3 if kind == "invoice" else self.events


CASES = (Case(0, 1, 8, 3000), Case(100, 1, 64, 2000))
QUICK_CASES = (Case(0, 1, 8, 200),)


@dataclass(frozen=True)
class RunResult:
    rate: float  # completions per second, first to last
    done: int
    seconds: float
    partial: bool  # the time cap ended the run before every message completed
    cpu: CpuUse  # CPU per completion, by process, over the same interval
    detail: str = ""  # outcomes seen, errors, cross-checks

    def describe(self) -> str:
        text = f"{self.rate:.0f}/s ({self.done} in {self.seconds:.1f} s"
        text += ", PARTIAL: time cap)" if self.partial else ")"
        text += "; CPU ms/event " + ", ".join(
            f"{k} {v:.2f}" for k, v in self.cpu.ms_per_unit.items()
        )
        text += f"; other load {self.cpu.other_cores:.1f} cores"
        return f"{text}; {self.detail}" if self.detail else text


@dataclass
class Row:
    """Every run of one case, by kind."""

    case: Case
    results: dict[str, list[RunResult]] = field(
        default_factory=lambda: {k: [] for k in KINDS + BASE_KINDS}
    )

    def figure(self, kind: str) -> Figure:
        figure = Figure()
        for result in self.results[kind]:
            figure.add(result.rate, "partial (time cap)" if result.partial else "")
        return figure

    def cpu(self, kind: str, process: str) -> float:
        values = [r.cpu.ms_per_unit.get(process, float("nan")) for r in self.results[kind]]
        return statistics.median(values) if values else float("nan")

    def other_load(self) -> float:
        return max(r.cpu.other_cores for runs in self.results.values() for r in runs)

    def ratios(self) -> list[float]:
        pairs = zip(self.results["onboarded"], self.results["bare"], strict=False)
        return [pipeline.rate / bare.rate for pipeline, bare in pairs]


# --- completion watching ----------------------------------------------------------------------


def watch(
    count: Callable[[], int], total: int, proc: Proc, cap_s: float, meter: CpuMeter
) -> RunResult:
    """Poll `count` until it reaches `total`; the rate from the first completion seen to the last.

    Completions before the first poll that sees any are left out of the rate, so a slow start-up
    never dilutes it; CPU is sampled at the same two moments.
    """
    started = time.perf_counter()
    first_n = 0
    first = None
    while True:
        n = count()
        if n and first is None:
            first, first_n = meter.sample(), n
        now = time.perf_counter()
        if n >= total or (first is not None and now - first.at > cap_s):
            break
        if first is None and now - started > STARTUP_TIMEOUT_S:
            raise RuntimeError(f"{proc.name}: no completion after {STARTUP_TIMEOUT_S:.0f}s")
        proc.check_alive()
        time.sleep(0.005)
    last = meter.sample()
    if first is None:
        raise RuntimeError(f"{proc.name}: nothing completed")
    seconds = last.at - first.at
    counted = n - first_n
    rate = counted / seconds if seconds > 0 else float("nan")
    cpu = CpuUse.between(first, last, counted)
    return RunResult(rate, n, seconds, partial=n < total, cpu=cpu)


@contextlib.contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    """Start `proc`; stop its process group on the way out, whatever happened."""
    try:
        yield proc.start()
    finally:
        proc.stop()


def cli() -> list[str]:
    """`subaccount-worker` as installed beside this interpreter (or the module, if not)."""
    script = Path(sys.executable).with_name("subaccount-worker")
    return [str(script)] if script.exists() else [sys.executable, "-m", "worker.cli"]


# --- the two sides ----------------------------------------------------------------------------


class Bench:
    """The shared servers and what every run needs from them."""

    def __init__(
        self,
        svc: Services,
        cap_s: float,
        worker_cpus: set[int] | None = None,
        baseline: Path | None = None,
    ) -> None:
        self.svc = svc
        self.baseline = baseline  # another checkout, for the *_base kinds
        self.cap_s = cap_s
        self.worker_cpus = worker_cpus  # --pin: the workers of both sides on these CPUs
        self.redis = redis.Redis.from_url(svc.redis_url)
        settings = load_settings(
            redis_url=svc.redis_url, api_base_url=svc.api_url, api_key=API_KEY, key_prefix=PREFIX
        )
        self.publisher = Publisher(self.redis, settings)
        self.runs = 0

    def close(self) -> None:
        self.redis.close()

    def run(self, kind: str, case: Case) -> RunResult:
        self.reset(case.latency_ms)
        if kind in ("bare", "bare_session"):
            return self.bare(case, via_session=kind == "bare_session")
        return self.pipeline(case, kind)

    def reset(self, latency_ms: int) -> None:
        """Empty Redis (ours: started by this benchmark) and the sandbox; set the latency."""
        self.redis.flushall()
        self.svc.admin.reset()
        self.svc.latency(latency_ms)
        self.runs += 1

    def meter(self, proc: Proc) -> CpuMeter:
        return CpuMeter({"worker": lambda: group_cpu_s(proc.pid), **self.svc.cpu_probes()})

    # --- pipeline -----------------------------------------------------------------------------

    def pipeline(self, case: Case, kind: str) -> RunResult:
        base = kind.endswith("_base")
        kind = kind.removesuffix("_base")
        count = case.count(kind)
        clients = [f"bench-{self.runs}-{i:05d}" for i in range(count)]
        if kind == "invoice":
            self.onboard_directly(clients)
            events = [examples.invoice_paid(cid, f"inv-{cid}", 10) for cid in clients]
        else:
            events = [examples.onboarded(cid) for cid in clients]
        for start in range(0, count, PUBLISH_BATCH):
            self.publisher.publish_many(events[start : start + PUBLISH_BATCH])
        name = f"worker-{self.runs}"
        at_info = kind == "info"
        env = self.worker_env("INFO" if at_info else "WARNING", name)
        command = cli()
        if base and self.baseline is not None:
            command = [sys.executable, "-m", "worker.cli"]
            env["PYTHONPATH"] = str(self.baseline)
        proc = Proc(
            name,
            [
                *command,
                "worker",
                "--processes",
                str(case.processes),
                "--threads",
                str(case.threads),
            ],
            env=env,
            output=None if at_info else self.svc.workdir / f"{name}.log",  # INFO: to /dev/null
            cpus=self.worker_cpus,
        )
        stream = keys.outcomes(PREFIX)
        scripts_before = self.scripts_run()
        with running(proc):
            result = watch(
                lambda: int(self.redis.xlen(stream)), count, proc, self.cap_s, self.meter(proc)
            )
        scripts = (self.scripts_run() - scripts_before) / max(1, result.done)
        detail = f"{self.outcomes_seen(proc)}; Redis scripts/event {scripts:.2f}"
        return replace(result, detail=detail)

    def scripts_run(self) -> int:
        """Lua calls Redis has run (ours and Dramatiq's): a count per event that noise cannot
        blur, unlike a rate (the benchmark's own polling runs none)."""
        stats: Any = self.redis.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in
                   ("evalsha", "eval"))  # fmt: skip

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
        accounts: dict[str, Any] = {}
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

    def outcomes_seen(self, proc: Proc) -> str:
        """Outcomes by kind (all should be `applied`), and the rate their `at_ms` stamps give."""
        entries = self.redis.xrange(keys.outcomes(PREFIX))
        outcomes = Counter(fields[b"outcome"].decode() for _id, fields in entries)
        stamps = sorted(int(fields[b"at_ms"]) for _id, fields in entries)
        detail = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        if len(stamps) > 1 and stamps[-1] > stamps[0]:
            detail += f"; at_ms rate {(len(stamps) - 1) * 1000 / (stamps[-1] - stamps[0]):.0f}/s"
        if set(outcomes) != {"applied"}:
            detail += f"; NOT ALL APPLIED (worker log: {proc.output or 'none'})"
        return detail

    # --- bare ---------------------------------------------------------------------------------

    def bare(self, case: Case, *, via_session: bool = False) -> RunResult:
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
            "BENCH_BARE_HTTP": "session" if via_session else "client",
        }
        proc = Proc(
            name, argv, env=env, output=self.svc.workdir / f"{name}.log", cpus=self.worker_cpus
        )

        def completed() -> int:
            done, failed = self.redis.mget(BARE_DONE_KEY, BARE_FAILED_KEY)
            return int(done or 0) + int(failed or 0)

        with running(proc):
            result = watch(completed, case.events, proc, self.cap_s, self.meter(proc))
        failed = int(self.redis.get(BARE_FAILED_KEY) or 0)
        creates = len(self.svc.admin.journal(operation="create"))
        detail = f"sandbox journal: {creates} creates" + (f"; {failed} FAILED" if failed else "")
        return replace(result, detail=detail)


def enqueue_bare(client: redis.Redis, usernames: Sequence[str]) -> None:
    """Write the bare actor's messages in Dramatiq's Redis layout (what `actor.send` writes)."""
    queue = f"{BARE_NAMESPACE}:{BARE_QUEUE}"
    for start in range(0, len(usernames), PUBLISH_BATCH):
        pipe = client.pipeline(transaction=False)
        for username in usernames[start : start + PUBLISH_BATCH]:
            redis_id = str(uuid.uuid4())
            message = dramatiq.Message(
                queue_name=BARE_QUEUE,
                actor_name=BARE_ACTOR,
                args=(username,),
                kwargs={},
                options={"redis_message_id": redis_id},
            )
            pipe.hset(f"{queue}.msgs", redis_id, message.encode())
            pipe.rpush(queue, redis_id)
        pipe.execute()


# --- the run and the report -------------------------------------------------------------------

LABELS = {
    "bare": "bare",
    "bare_session": "bare on HttpSession",
    "onboarded": "pipeline onboarded",
    "invoice": "pipeline invoice.paid",
    "info": "pipeline onboarded at INFO",
    "onboarded_base": "baseline onboarded",
    "invoice_base": "baseline invoice.paid",
}


def run_case(bench: Bench, case: Case, runs: int) -> Row:
    """Alternate bare and pipeline runs; one more run at INFO at the end."""
    row = Row(case)
    once = ("bare", "onboarded", "bare_session", "invoice")
    plan = [kind for _ in range(runs) for kind in once] + ["info"]
    for kind in plan:
        result = bench.run(kind, case)
        row.results[kind].append(result)
        progress(f"{case.label}: {LABELS[kind]} {result.describe()}")
    return row


def report(rows: Sequence[Row]) -> None:
    headers = [
        "case", "bare ev/s", "runs", "pipeline ev/s", "runs", "ratio", "run ratios",
        "bare on session", "ratio", "invoice ev/s", "INFO ev/s",
    ]  # fmt: skip
    table = []
    for row in rows:
        bare, pipeline, invoice = row.figure("bare"), row.figure("onboarded"), row.figure("invoice")
        session = row.figure("bare_session")
        table.append(
            [
                row.case.label,
                f"{bare.median:.0f}",
                bare.runs(),
                f"{pipeline.median:.0f}",
                pipeline.runs(),
                f"{pipeline.median / bare.median:.2f}x",
                " / ".join(f"{r:.2f}" for r in row.ratios()),
                f"{session.median:.0f}",
                f"{pipeline.median / session.median:.2f}x",
                f"{invoice.median:.0f}",
                f"{row.figure('info').median:.0f}",
            ]
        )
    title = "Full pipeline vs bare Dramatiq actor: events/s, first to last completion"
    print_table(title, headers, table)
    print(
        "bare: one httpx create per message (bench.bare_actor). pipeline: client.onboarded, one\n"
        "create each, logs at WARNING. invoice: invoice.paid for onboarded clients (read + grant:\n"
        "2 calls). INFO: pipeline onboarded with JSON logs to /dev/null. ratio: pipeline median /\n"
        "bare median (goal >= 0.80); run ratios pair each pipeline run with the bare run before\n"
        "it. bare on session: the bare actor calling through the worker's HttpSession (httpx's\n"
        "transport, a connection per thread): its ratio is the pipeline's cost on that HTTP path."
    )
    cpu_headers = ["case", "side", "worker", "sandbox", "redis"]
    cpu_rows = [
        [row.case.label, LABELS[kind]]
        + [f"{row.cpu(kind, process):.2f}" for process in ("worker", "sandbox", "redis")]
        for row in rows
        for kind in KINDS
    ]
    print_table("CPU ms per event (median of runs), by process", cpu_headers, cpu_rows)
    for row in rows:
        print(f"{row.case.label}: other load on the machine up to {row.other_load():.1f} cores")
        for kind in KINDS:
            notes = row.figure(kind).notes
            if notes:
                print(f"note: {row.case.label} {LABELS[kind]}: {', '.join(notes)}")


def main() -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "pipeline benchmark")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="run the workers of both sides on CPU 0, the sandbox, Redis and this on the rest",
    )
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 2)
    cap_s = 3.0 if args.quick else 12.0
    split = split_cpus() if args.pin else None
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        del os.environ[key]  # the workers get exactly the settings given here
    started = time.monotonic()
    with services(with_redis=True) as svc:
        if split is not None:
            svc.pin_servers(split[1])
        bench = Bench(svc, cap_s, split[0] if split else None)
        try:
            rows = [run_case(bench, case, runs) for case in (QUICK_CASES if args.quick else CASES)]
        finally:
            bench.close()
    report(rows)
    pinned = f"; workers pinned to CPU {sorted(split[0])}" if split else ""
    print(f"\n{runs} run(s) per figure, 1 at INFO{pinned}; took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
