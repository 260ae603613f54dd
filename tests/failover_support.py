"""A Redis failover on loopback, with a replica that lags on purpose, and what it did to grants.

`Cluster` is a master, a replica and three sentinels (valkey-server, Redis 7.2 protocol). The
replica replicates through `LagLink`, a TCP relay this process owns: `hold()` keeps the master's
stream from the replica (the replica is alive and answers the sentinels, but is behind), and
when the master dies the held bytes die with it, exactly what a replica that had not yet
received the last writes loses. `run_failover` drives the real pipeline (Dramatiq worker threads
through the Sentinel client, the sandbox over HTTP) through that and counts doubled grants and
lost acknowledgements. The e2e test and bench/durability_bench.py share it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from handlers import examples as f
from handlers import username_for
from tests.pipeline_support import pipeline_settings, running_pipeline, wait_for_outcomes
from tests.servers import SentinelServer, ValkeyServer, free_port, wait_until
from worker import keys
from worker.errors import BrokerUnavailable
from worker.sandbox import SandboxAdmin

MASTER_NAME = "saw-master"


class LagLink:
    """Relays one replica's replication connection to the master; can hold the master's side."""

    def __init__(self, master_port: int) -> None:
        self.master_port = master_port
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._held = threading.Event()
        self._buffer: list[bytes] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        """From now on the master's bytes wait here: the replica falls behind."""
        self._held.set()

    def held_bytes(self) -> int:
        with self._lock:
            return sum(len(chunk) for chunk in self._buffer)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                replica, _ = self._listener.accept()
                try:
                    master = socket.create_connection(("127.0.0.1", self.master_port))
                except OSError:  # the master is gone: so is this link
                    replica.close()
                    continue
                self._sockets += [replica, master]
                threading.Thread(
                    target=self._pump, args=(master, replica, True), daemon=True
                ).start()
                threading.Thread(
                    target=self._pump, args=(replica, master, False), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, holdable: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if holdable and self._held.is_set():
                    with self._lock:
                        self._buffer.append(chunk)  # never sent: dies with the master
                    continue
                sink.sendall(chunk)
        for sock in (source, sink):  # one side gone: the link is down, held bytes lost
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


class Cluster:
    """A master, a replica (through a LagLink) and three sentinels, all on loopback."""

    def __init__(self) -> None:
        self.master = ValkeyServer().start()
        self.link = LagLink(self.master.port)
        self.replica = ValkeyServer("--replicaof", "127.0.0.1", str(self.link.port)).start()
        # A long failover timeout: Sentinel "fixes" a replica whose master address is not the one
        # it monitors (ours goes through the relay) only after that long, past the test's end.
        self.sentinels = [
            SentinelServer(MASTER_NAME, self.master.port, failover_timeout_ms=60_000)
            for _ in range(3)
        ]
        for sentinel in self.sentinels:
            sentinel.start()
        wait_until(self._ready, timeout_s=20, what="the replica in sync, sentinels seeing all")

    def _ready(self) -> bool:
        replica = redis.Redis(port=self.replica.port, decode_responses=True)
        try:
            if replica.info("replication").get("master_link_status") != "up":
                return False
            for sentinel in self.sentinels:
                client = redis.Redis(port=sentinel.port, decode_responses=True)
                state = client.sentinel_master(MASTER_NAME)
                client.close()
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return False
            return True
        finally:
            replica.close()

    @property
    def sentinel_addresses(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def master_port(self) -> int:
        client = redis.Redis(port=self.sentinels[0].port)
        try:
            _host, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            return int(port)
        finally:
            client.close()

    def rejoin(self) -> None:
        """The lost master's machine back, empty, as a replica of the promoted one (as Sentinel
        or a StatefulSet would bring it): a `replicas:1` guarantee can be given again."""
        self.spare = ValkeyServer("--replicaof", "127.0.0.1", str(self.replica.port)).start()

    def cleanup(self) -> None:
        for sentinel in self.sentinels:
            sentinel.cleanup()
        self.link.close()
        for server in (self.replica, self.master, getattr(self, "spare", None)):
            if server is not None:
                server.cleanup()


@dataclass
class Figures:
    """What one failover run did."""

    durability: str
    invoices: int
    grants_in_flight: int  # grants begun on the master when it was killed
    accepted_in_lag: int  # events acknowledged (publish returned) while the replica lagged
    refused_in_lag: int  # events refused (BrokerUnavailable: a 503) while it lagged
    recover_s: float  # from the kill to the last invoice's outcome (or the give-up)
    doubled: int  # invoices granted more than once
    missing: int  # invoices never granted
    lost_acks: int  # acknowledged events that never got an outcome

    def line(self) -> str:
        return (
            f"durability={self.durability}: {self.invoices} invoices,"
            f" {self.grants_in_flight} grants begun at the kill, {self.accepted_in_lag} events"
            f" acknowledged and {self.refused_in_lag} refused while the replica lagged,"
            f" recovered in {self.recover_s:.1f} s; doubled={self.doubled}"
            f" missing={self.missing} lost_acks={self.lost_acks}"
        )


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    made = Cluster()
    try:
        yield made
    finally:
        made.cleanup()


def run_failover(
    made: Cluster,
    sandbox: SandboxAdmin,
    api_url: str,
    api_key: str,
    durability: str,
    invoices: int = 8,
    late_events: int = 4,
    give_up_s: float = 20.0,
) -> Figures:
    """Onboard `invoices` clients, send one invoice each, lag the replica while the grants run
    (the API answers in 300 ms), send `late_events` more, SIGKILL the master, let Sentinel
    promote the replica, and count what each invoice and each acknowledged event became."""
    settings = pipeline_settings(
        f"redis://127.0.0.1:{made.master.port}/0", api_url, api_key,
        redis_sentinels=made.sentinel_addresses, redis_sentinel_master=MASTER_NAME,
        redis_durability=durability, redis_durability_timeout_ms=200,
    )  # fmt: skip
    ids = [f"FO-{n}" for n in range(invoices)]
    with running_pipeline(settings, threads=4) as runtime:
        watcher = redis.Redis(port=made.master.port)
        onboard = [f.onboarded(cid) for cid in ids]
        runtime.publisher.publish_many(onboard)
        wait_for_outcomes(watcher, [e["id"] for e in onboard])
        wait_until(lambda: _replica_caught_up(made), what="the replica caught up")
        sandbox.set_faults({"operations": {"add_credits": {"latency_ms": 300}}})
        paid = [f.invoice_paid(cid, f"INV-{cid}", 10) for cid in ids]
        runtime.publisher.publish_many(paid)
        wait_until(lambda: _replica_caught_up(made), what="the invoices on the replica")
        made.link.hold()  # from here the replica misses every write
        lagging = redis.Redis(port=made.replica.port)
        wait_until(lambda: _claimed(watcher) - _claimed(lagging) >= 2,
                   what="grants begun that the replica has not seen")  # fmt: skip
        lagging.close()
        accepted, refused = _publish_late(runtime.publisher, ids[:late_events])
        in_flight = _claimed(watcher)
        watcher.close()
        killed_at = time.monotonic()
        made.master.kill()
        wait_until(lambda: made.master_port() == made.replica.port, timeout_s=15,
                   what="Sentinel promoting the replica")  # fmt: skip
        made.rejoin()
        survivor = redis.Redis(port=made.replica.port)
        outcome_ids = [e["id"] for e in paid] + [e["id"] for e in accepted]
        seen = _outcomes_within(survivor, outcome_ids, give_up_s)
        recover_s = time.monotonic() - killed_at
        survivor.close()
    grants = [e for e in sandbox.journal(operation="add_credits") if e["applied"]]
    per_user = {username_for(cid): 0 for cid in ids}
    for entry in grants:
        per_user[entry["username"]] = per_user.get(entry["username"], 0) + 1
    return Figures(
        durability=durability,
        invoices=invoices,
        grants_in_flight=in_flight,
        accepted_in_lag=len(accepted),
        refused_in_lag=refused,
        recover_s=recover_s,
        doubled=sum(1 for n in per_user.values() if n > 1),
        missing=sum(1 for n in per_user.values() if n == 0),
        lost_acks=sum(1 for e in accepted if e["id"] not in seen),
    )


def _replica_caught_up(made: Cluster) -> bool:
    master = redis.Redis(port=made.master.port, decode_responses=True)
    replica = redis.Redis(port=made.replica.port, decode_responses=True)
    try:
        offset = int(master.info("replication")["master_repl_offset"])
        return int(replica.info("replication").get("slave_repl_offset", -1)) >= offset
    finally:
        master.close()
        replica.close()


def _claimed(client: redis.Redis) -> int:
    """Invoices whose grant has begun (their business key claimed) on this server."""
    return len(list(client.scan_iter(match=keys.business("saw", "invoice", "*"), count=1000)))


def _publish_late(publisher: Any, client_ids: list[str]) -> tuple[list[dict[str, Any]], int]:
    """Publish one event per client, one at a time (each is one acknowledgement)."""
    accepted: list[dict[str, Any]] = []
    refused = 0
    for cid in client_ids:
        event = f.updated(cid, t=1, email=f"late-{cid.lower()}@example.com")
        try:
            publisher.publish(event)
        except BrokerUnavailable:
            refused += 1
        else:
            accepted.append(event)
    return accepted, refused


def _outcomes_within(client: redis.Redis, event_ids: list[str], give_up_s: float) -> set[str]:
    """The ids among `event_ids` with an outcome, waiting up to `give_up_s` for all of them."""
    try:
        return set(wait_for_outcomes(client, event_ids, timeout_s=give_up_s))
    except AssertionError:
        ledger = {}
        for record in _all_outcomes(client):
            ledger[record.get("event_id")] = record
        return {i for i in event_ids if i in ledger}


def _all_outcomes(client: redis.Redis) -> list[dict[str, Any]]:
    from tests.pipeline_support import outcomes

    return outcomes(client)
