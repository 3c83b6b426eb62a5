"""Faults, each injected on a ChaosCluster and healed later, every one
recorded in the history (``fault_start`` when it is injected, with the
partitions the target led then; ``fault_end`` when it is healed, with
what healing found).

* ``kill-leader``, ``kill-controller``: kill -9; healed by starting the
  broker again on its port and data (which waits for its old ZooKeeper
  session to expire, as a new incarnation must).
* ``sigterm-leader``: SIGTERM and wait for the exit (a controlled
  shutdown, once the broker does one); healed by a start.
* ``sigstop-leader``: SIGSTOP, a zombie that keeps its sockets; healed by
  SIGCONT. Held for the session timeout + 5 s by the scenarios, so that
  the cluster must give up on it.
* ``zk-down``: ZooKeeper stopped (SIGTERM, by its PID) and started again on
  the same port and data; sessions younger than their timeout survive, as
  ZooKeeper restarts their clocks on loading them.
* ``cut-leader-zk``: a partition's leader cut from ZooKeeper only (packets
  dropped, see ``network``); it still talks to clients and to the other
  brokers. Its lease lapses after 2/3 of the session, its session expires,
  another broker is elected; healed, it follows and truncates.
* ``cut-leader-peers``: a partition's leader cut from the other brokers
  only, both ways; it keeps ZooKeeper and its clients. Its followers cannot
  fetch and its ISR shrinks to itself. An acks=all write already waiting
  waits on (the high watermark holds while the ISR is below
  min.insync.replicas) until the heal or its request's timeout, and those
  behind it on its connection with it; after that, acks=all writes are
  refused as NOT_ENOUGH_REPLICAS (retriable) until the heal.

Each cut records, as it is injected, how many connections it cut then, and
as it is healed, every partition's leader, epoch and ISR just before.

Processes are started here only from the thread that runs the scenario:
each child gets SIGTERM when the thread that started it dies (prctl).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from pybroker.local_cluster import _terminal_interrupt_ignored, wait_for

from .cluster import ChaosCluster
from .history import History
from .network import PEERS, ZOOKEEPER

CUTS = {"cut-leader-zk": ZOOKEEPER, "cut-leader-peers": PEERS}  # fault kind -> the network's cut
KINDS = ("kill-leader", "kill-controller", "sigterm-leader", "sigstop-leader", "zk-down", *CUTS)
RESTART_TIMEOUT = 90


@dataclass
class Fault:
    id: int
    kind: str
    broker: int | None
    partitions: list[int]
    started: float
    healed: bool = False
    details: dict = field(default_factory=dict)


class Faults:
    def __init__(self, cluster: ChaosCluster, history: History, topic: str):
        self.cluster, self.history, self.topic = cluster, history, topic
        self._ids = itertools.count(1)
        self.open: list[Fault] = []

    def _led_by(self, broker: int) -> list[int]:
        states = self.cluster.states(self.topic) or {}
        return sorted(p for p, (leader, _, _) in states.items() if leader == broker)

    def _begin(self, kind: str, broker: int | None) -> Fault:
        led = self._led_by(broker) if broker is not None else []
        fault = Fault(next(self._ids), kind, broker, led, time.monotonic())
        self.history.record("fault_start", id=fault.id, kind=kind, broker=broker, partitions=led)
        self.open.append(fault)
        return fault

    # -- injecting ------------------------------------------------------------------------

    def inject(self, kind: str, partition: int = 0) -> Fault:
        if kind == "kill-leader":
            return self.kill(self.cluster.leader_of(self.topic, partition), kind)
        if kind == "kill-controller":
            controller = wait_for(lambda: max(self.cluster.controller_id(), 0), 30, "a controller")
            return self.kill(controller, kind)
        if kind == "sigterm-leader":
            return self.sigterm(self.cluster.leader_of(self.topic, partition))
        if kind == "sigstop-leader":
            return self.sigstop(self.cluster.leader_of(self.topic, partition))
        if kind == "zk-down":
            return self.zookeeper_down()
        if kind in CUTS:
            return self.cut(kind, self.cluster.leader_of(self.topic, partition))
        raise ValueError(f"unknown fault {kind!r}; known: {', '.join(KINDS)}")

    def kill(self, broker: int, kind: str = "kill") -> Fault:
        fault = self._begin(kind, broker)
        self.cluster.broker(broker).kill()
        return fault

    def sigterm(self, broker: int) -> Fault:
        fault = self._begin("sigterm-leader", broker)
        began = time.monotonic()
        code = self.cluster.broker(broker).stop(timeout=60)
        fault.details.update(exit_code=code, exited_after_s=round(time.monotonic() - began, 2))
        self.history.record("fault_note", id=fault.id, **fault.details)
        return fault

    def sigstop(self, broker: int) -> Fault:
        fault = self._begin("sigstop-leader", broker)
        self.cluster.broker(broker).pause()
        return fault

    def zookeeper_down(self) -> Fault:
        fault = self._begin("zk-down", None)
        self.cluster.zookeeper.stop()
        return fault

    def cut(self, kind: str, broker: int) -> Fault:
        fault = self._begin(kind, broker)
        self.history.record("fault_note", id=fault.id, **self.cluster.network.cut(CUTS[kind], broker))
        return fault

    # -- healing ----------------------------------------------------------------------------

    def heal(self, fault: Fault) -> None:
        if fault.healed:
            return
        if fault.kind == "zk-down":
            self._zookeeper_up(fault)
        elif fault.kind in CUTS:
            # What the cut led to, for the report: who leads, and the ISRs, as it ends.
            states = self.cluster.states(self.topic) or {}
            fault.details["before_heal"] = {p: [lead, epoch, list(isr)] for p, (lead, epoch, isr) in states.items()}
            fault.details.update(self.cluster.network.heal(CUTS[fault.kind], fault.broker))
        elif fault.broker is not None:
            broker = self.cluster.broker(fault.broker)
            if broker.paused:
                broker.resume()
                fault.details["resumed"] = True
            elif not broker.alive():
                fault.details["restart_s"] = round(broker.start(RESTART_TIMEOUT), 2)
        fault.healed = True
        self.open.remove(fault)
        self.history.record("fault_end", id=fault.id, **fault.details)

    def _zookeeper_up(self, fault: Fault) -> None:
        zk = self.cluster.zookeeper
        if not zk.alive():
            with _terminal_interrupt_ignored():  # as LocalCluster starts it: ZooKeeper is stopped last
                zk.start()
            fault.details["zookeeper_ready_s"] = round(zk.wait_ready(60), 2)

    def heal_all(self) -> None:
        """Every open fault healed, oldest first; then anything else down comes back too."""
        for fault in list(self.open):
            self.heal(fault)
        self.cluster.network.heal_all()
        if not self.cluster.zookeeper.alive():
            with _terminal_interrupt_ignored():
                self.cluster.zookeeper.start()
            self.cluster.zookeeper.wait_ready(60)
        for broker in self.cluster.brokers:
            if broker.paused:
                broker.resume()
            if not broker.alive():
                broker.start(RESTART_TIMEOUT)
