"""The module Dramatiq's CLI loads: `dramatiq worker.actors` (what `subaccount-worker worker` runs).

Importing it reads the settings from the environment, configures logging and declares the
`process_event` actor on a Redis broker. It is the only module that does work at import time,
because that is how Dramatiq finds brokers and actors.
"""

from __future__ import annotations

import multiprocessing

import dramatiq

from worker.log import configure_logging
from worker.ops import liveness, metrics, orphans
from worker.runtime import build_runtime
from worker.settings import get_settings

_parent = multiprocessing.parent_process()
if _parent is not None and _parent.pid is not None:  # a worker process of Dramatiq's CLI
    orphans.die_with_parent(_parent.pid)  # not left consuming beside the next set
settings = get_settings()
settings.require_api()
configure_logging(settings)
runtime = build_runtime(settings)
broker = runtime.broker
dramatiq.set_broker(broker)
process_event = runtime.actor
metrics.mark_worker_up()
liveness.record_broker(broker.broker_id)  # for the supervisor's /healthz
