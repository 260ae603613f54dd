"""A power loss for Redis on one machine: what was acknowledged, what came back.

valkey-server runs with tests/shim/power_loss.c preloaded: its append-only file's writes stay in
the process until it fsyncs them, so a SIGKILL loses exactly what a power cut loses (the page
cache) and nothing fsynced. With `appendfsync everysec` (deploy/'s setting) that is up to a
second of writes. Events are published one at a time (each one an acknowledgement, as a 202 or
`send` would give), the server is killed while they flow, restarted on the same directory, and
the events still queued are counted. The test and bench/durability_bench.py share it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import redis

from handlers import examples as f
from tests.servers import ValkeyServer, wait_until
from worker import keys
from worker.errors import BrokerUnavailable
from worker.pipeline.publish import Publisher
from worker.settings import load_settings

SHIM_SOURCE = Path(__file__).parent / "shim" / "power_loss.c"


def build_shim(into: Path) -> Path:
    """Compile the shim (gcc, a second) into `into`; its path."""
    library = into / "power_loss.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(SHIM_SOURCE), "-ldl"],
        check=True,
        capture_output=True,
    )
    return library


class PowerCutServer(ValkeyServer):
    """A ValkeyServer (AOF everysec) whose unsynced AOF writes a SIGKILL loses."""

    def __init__(self, shim: Path, fsync: str) -> None:
        super().__init__(fsync=fsync)
        self.shim = shim

    def start(self) -> PowerCutServer:
        previous = os.environ.get("LD_PRELOAD")
        os.environ["LD_PRELOAD"] = str(self.shim)  # (inherited by the server process only)
        try:
            super().start()
        finally:
            if previous is None:
                del os.environ["LD_PRELOAD"]
            else:
                os.environ["LD_PRELOAD"] = previous
        return self


@dataclass
class PowerLoss:
    fsync: str
    durability: str
    acknowledged: int
    survived: int

    @property
    def lost(self) -> int:
        return self.acknowledged - self.survived

    def line(self) -> str:
        return (
            f"appendfsync {self.fsync}, durability={self.durability}: {self.acknowledged} events"
            " acknowledged before the"
            f" power cut, {self.survived} back after it, {self.lost} lost"
        )


def run_power_loss(shim: Path, fsync: str, durability: str, events: int = 300) -> PowerLoss:
    """Publish events one at a time (durability `durability`); once `events` are acknowledged
    cut the power, restart on the same files, count the acknowledged events still queued."""
    server = PowerCutServer(shim, fsync).start()
    settings = load_settings(redis_url=server.url, redis_durability=durability)
    publisher = Publisher(redis.Redis.from_url(server.url), settings)
    acknowledged: list[str] = []
    stop = threading.Event()

    def publish() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                publisher.publish(f.onboarded(f"PL-{n}"))
            except BrokerUnavailable:
                return  # the server is gone: this one was not acknowledged
            acknowledged.append(f"PL-{n}")

    sender = threading.Thread(target=publish)
    sender.start()
    wait_until(lambda: len(acknowledged) >= events, what=f"{events} events acknowledged")
    server.kill()  # the power cut, while events still flow
    stop.set()
    sender.join()
    restarted = ValkeyServer(fsync=fsync)  # the machine boots again, on the same files
    shutil.rmtree(restarted.dir, ignore_errors=True)
    restarted.dir, restarted.port = server.dir, server.port
    restarted.start()
    try:
        queue = keys.dramatiq_queue(settings.key_prefix, settings.queue_name)
        broker = redis.Redis(port=restarted.port, db=settings.broker_redis_db)
        kept = b"\n".join(broker.hvals(f"{queue}.msgs"))
        survived = sum(1 for cid in acknowledged if f'"{cid}"'.encode() in kept)
    finally:
        restarted.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
    return PowerLoss(fsync, durability, len(acknowledged), int(survived))


def shim_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="saw-shim-"))
