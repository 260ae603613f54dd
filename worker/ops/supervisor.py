"""`subaccount-worker worker`: run Dramatiq's worker processes, restart them, serve /metrics and
/healthz.

Dramatiq's CLI stops every worker process when one dies; a process killed by a poison message
would then stop the whole service. The supervisor restarts it (with a capped backoff), which is
what lets the delivery counter in the ledger catch the poison message on its next delivery. It
also owns the per-run metrics directory and serves the merged view of all processes, and the
liveness probe (`worker.ops.liveness`). Before any consumer starts it binds the metrics port and
checks that Redis accepts our credentials: either failing ends the command with one line, exit 2.

It restarts the whole tree, never a second set beside a live one (`worker.ops.orphans`): the
Dramatiq parent dies with the supervisor, its worker processes die with it, and a restart waits
until every process of the old tree is gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from types import FrameType

import redis

from worker.errors import ConfigError
from worker.log import get_logger
from worker.ops import liveness, metrics, orphans
from worker.pipeline.keyspace import Keyspace
from worker.pipeline.keyspace_move import move_to_broker_db
from worker.redis_access import connect, verify_credentials
from worker.settings import ENV_PREFIX, Settings

log = get_logger(__name__)

MAX_RESTART_DELAY_S = 10.0
# How long the rest of a tree whose parent exited may take to go (its processes die with the
# parent: this only bounds a platform without PR_SET_PDEATHSIG) before it is killed.
ORPHAN_GRACE_S = 5.0


def dramatiq_command(settings: Settings, processes: int, threads: int, module: str) -> list[str]:
    """The Dramatiq CLI invocation that loads our actors."""
    return [
        sys.executable, "-m", "dramatiq", module,
        "--processes", str(processes),
        "--threads", str(threads),
        "--queues", settings.queue_name,
        "--worker-shutdown-timeout", str(settings.worker_shutdown_timeout_ms),
        "--skip-logging",
    ]  # fmt: skip


def run(
    settings: Settings,
    processes: int,
    threads: int,
    module: str = "worker.actors",
    metrics_port: int | None = None,
) -> int:
    """Run the worker processes until SIGTERM/SIGINT; return the exit code.

    `metrics_port` (the command's --metrics-port) overrides the setting. Raises ConfigError,
    before any consumer starts, when that port is taken or Redis refuses our credentials.
    """
    verify_credentials(settings)
    _move_to_broker_db(settings)
    run_dir = metrics.prepare_run_dir(settings.metrics_dir or None)
    try:
        child = liveness.ChildState()
        _serve_http(settings, metrics_port, run_dir, child)
        return _supervise(settings, processes, threads, module, run_dir, child)
    finally:
        if not settings.metrics_dir:  # ours alone: leave nothing behind in /tmp
            shutil.rmtree(run_dir, ignore_errors=True)


def _move_to_broker_db(settings: Settings) -> None:
    """Bring messages a shared-keyspace version left beside the ledger into the broker's own
    database (worker/pipeline/keyspace_move.py); Redis down: the next start does it."""
    client = connect(settings, socket_timeout=10.0, socket_connect_timeout=3.0)
    try:
        moved = move_to_broker_db(client, settings)
        if moved:
            log.warning("broker.moved_to_own_database", messages=moved, db=settings.broker_redis_db)
    except redis.RedisError as exc:
        log.warning("broker.move_to_own_database_failed", error=str(exc))
    finally:
        client.close()


def _serve_http(
    settings: Settings, port_option: int | None, run_dir: str, child: liveness.ChildState
) -> None:
    """Serve /metrics and /healthz on the metrics port (0: none); a taken port is a ConfigError."""
    port = settings.metrics_port if port_option is None else port_option
    if not port:
        return
    client = connect(settings, socket_timeout=2.0)
    registry = metrics.merged_registry(
        run_dir,
        metrics.QueueCollector(
            client, settings.key_prefix, settings.queue_name, Keyspace.of(settings)
        ),
    )
    check = liveness.LivenessCheck(client, settings, run_dir, child)
    try:
        liveness.serve(settings.metrics_host, port, registry, check)
    except OSError as exc:
        source = f"{ENV_PREFIX}METRICS_PORT" if port_option is None else "--metrics-port"
        raise ConfigError(
            f"cannot serve metrics on {settings.metrics_host}:{port} ({source}):"
            f" {exc.strerror or exc}; stop the process that holds it or choose another port"
            " with --metrics-port or SUBACCOUNT_WORKER_METRICS_PORT (0 disables it)"
        ) from None


def _supervise(
    settings: Settings,
    processes: int,
    threads: int,
    module: str,
    run_dir: str,
    state: liveness.ChildState,
) -> int:
    env = {
        **os.environ,
        metrics.MULTIPROC_ENV: run_dir,
        "SUBACCOUNT_WORKER_WORKER_THREADS": str(threads),
    }
    stopping = threading.Event()
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    orphans.become_subreaper()  # a dead parent's orphans become ours to wait for and reap
    command = orphans.launcher(dramatiq_command(settings, processes, threads, module))
    delay = 0.5
    while not stopping.is_set():
        liveness.forget_brokers(run_dir)  # the previous run's processes have all exited
        child = subprocess.Popen(command, env=env)  # noqa: S603 - our own interpreter and module
        state.running()
        if stopping.is_set():  # the signal came while it was starting
            child.send_signal(signal.SIGTERM)
        log.info("worker.started", pid=child.pid, processes=processes, threads=threads)
        code = child.wait()
        if not orphans.end_tree(ORPHAN_GRACE_S):  # the whole old tree is gone
            log.error("worker.orphans_killed", grace_s=ORPHAN_GRACE_S)
        state.down()
        if stopping.is_set() or code == 0:
            log.info("worker.stopped", code=code)
            return code
        log.error("worker.crashed", code=code, restart_in_s=delay)
        stopping.wait(delay)  # a stop during the pause ends it at once
        delay = min(delay * 2, MAX_RESTART_DELAY_S)
    return 0  # asked to stop between two runs of the child
