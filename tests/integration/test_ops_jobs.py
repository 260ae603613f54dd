"""Jobs can be watched, paced, cancelled by a second operator, and stopped with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import redis

from tests.integration.ops_support import job_progress, make_dead_letters
from tests.servers import wait_until
from worker.ops.dead_letters import DeadLetters
from worker.ops.job_records import cancel_job, list_jobs, running_jobs
from worker.ops.jobs import JobResult, Runner
from worker.ops.plans import plan, select
from worker.pipeline.publish import Publisher
from worker.settings import load_settings


def test_a_second_operator_sees_a_paced_job_and_cancels_it(redis_url: str) -> None:
    """At 40 a second, a job of 200 is still running when another operator looks; their cancel
    stops it at the next batch, and what was not replayed stays a dead letter."""
    client = redis.Redis.from_url(redis_url)
    make_dead_letters(client, 200)
    runner = Runner(client, "saw", Publisher(client, load_settings(redis_url=redis_url)))
    the_plan = plan(client, "saw", select(client, "saw"))
    results: list[JobResult] = []
    thread = threading.Thread(target=lambda: results.append(
        runner.run(the_plan, operator="alice", rate=40)))  # fmt: skip
    thread.start()
    wait_until(lambda: job_progress(client) > 0, what="the job's first batch")
    (job,) = running_jobs(client, "saw")
    assert (job.operator, job.planned) == ("alice", 200)
    assert cancel_job(client, "saw", job.id, "bob") is not None
    thread.join(timeout=30)
    (result,) = results
    assert result.cancelled
    assert 0 < len(result.done) < 200
    assert DeadLetters(client, "saw").count() == 200 - len(result.done)
    (listed,) = list_jobs(client, "saw")
    assert (listed.state, listed.cancel_requested) == ("cancelled", True)
    client.close()


def test_ctrl_c_stops_a_replay_cleanly_and_says_how_many_went(redis_url: str) -> None:
    """SIGINT during `replay --rate`: the batch under way finishes, the command says how many
    were replayed (`--json`), marks the job cancelled and exits 1."""
    client = redis.Redis.from_url(redis_url)
    make_dead_letters(client, 150)
    env = {**os.environ, "SUBACCOUNT_WORKER_REDIS_URL": redis_url}
    args = ["dead-letters", "replay", "--all", "--yes", "--rate", "30", "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_until(lambda: job_progress(client) > 0, what="the replay's first batch")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    result = json.loads(out)
    assert result["cancelled"] is True
    assert 0 < result["replayed"] < 150
    assert DeadLetters(client, "saw").count() == 150 - result["replayed"]
    client.close()
