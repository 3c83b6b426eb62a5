"""The cluster a chaos run drives: a LocalCluster whose brokers may run a
different command (the seeded-bug broker) and reach ZooKeeper and each
other through cutting proxies (``network``), and what the harness asks of
it: the topic, each partition's leader and ISR, a wait for full ISRs.

The chaos settings follow CLUSTER.md section D: 3 brokers, RF 3,
min.insync.replicas=2, a 6 s ZooKeeper session.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from pybroker.local_cluster import FIRST_NODE_ID, ClusterBroker, LocalCluster, dev_defaults, wait_for
from pybroker.process import Command, pybroker_command
from pybroker.protocol.errors import ProtocolError

from .network import Network

SESSION_MS = 6000
BROKER_PROPS = {
    "auto.create.topics.enable": "false",
    "offsets.topic.num.partitions": "3",
    "group.initial.rebalance.delay.ms": "0",
    "zookeeper.session.timeout.ms": str(SESSION_MS),
    "replica.lag.time.max.ms": "5000",
    "unclean.leader.election.enable": "false",
}
TOPIC_CONFIGS = {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}

CommandFactory = Callable[[Mapping[str, str], str | None], Command]


def buggy_command(bug: str) -> CommandFactory:
    """Brokers run as ``python -m tests.chaos.buggy_broker --bug BUG <the usual args>``."""

    def factory(props: Mapping[str, str], log_level: str | None) -> Command:
        normal = pybroker_command(props, log_level)

        def command(port: int, data_dir: Path) -> list[str]:
            args = normal(port, data_dir)
            assert args[1:3] == ["-m", "pybroker"], args
            return [sys.executable, "-m", "tests.chaos.buggy_broker", "--bug", bug, *args[3:]]

        return command

    return factory


class ChaosCluster(LocalCluster):
    """LocalCluster with the brokers' command line chosen by ``command``
    (default: the normal broker), each broker behind its proxies
    (``network``): its ``zookeeper.connect`` and ``advertised.listeners``
    are theirs. Clients bootstrap from the brokers' own ports and are then
    sent to the advertised ones, like the brokers themselves."""

    def __init__(self, n: int = 3, command: CommandFactory | None = None, **kwargs):
        overrides = {**BROKER_PROPS, **(kwargs.pop("overrides", None) or {})}
        super().__init__(n, overrides=overrides, **kwargs)
        self.command = command
        self.network = Network(self._pids)

    def _pids(self) -> dict[int, int]:
        # Read on the proxies' thread: no poll() of the processes from there.
        return {b.node_id: b.process.proc.pid for b in self.brokers if b.process.proc is not None}

    def live_brokers(self) -> list[ClusterBroker]:
        # Those cut from ZooKeeper last: what they know may be stale, and
        # metadata() (the harness's view, the watcher's) asks the first that answers.
        stale = self.network.cut_from_zookeeper
        return sorted(super().live_brokers(), key=lambda b: b.node_id in stale)

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.network.close()  # last: a broker stopping still talks to ZooKeeper through it

    def _make_broker(self, node_id: int, port: int) -> ClusterBroker:
        # The brokers are on consecutive ports from the first's; none listens yet.
        first = port - (node_id - FIRST_NODE_ID)
        zookeeper_port = int(self.zookeeper.connect.rsplit(":", 1)[1])
        proxied = self.network.add_broker(node_id, port, zookeeper_port, self.chroot, range(first, first + self.n))
        self.broker_overrides.setdefault(node_id, {}).update(proxied)
        broker = super()._make_broker(node_id, port)
        if self.command is not None:
            # The same properties LocalCluster gave it, under another command.
            props = {
                **dev_defaults(self.n),
                **self.overrides,
                "zookeeper.connect": self.zookeeper_connect,
                "broker.id": str(node_id),
                **self.broker_overrides.get(node_id, {}),
            }
            broker.process.command = self.command(props, self.log_level)
            # The command imports tests.chaos: the repository's root must be on the path.
            root = str(Path(__file__).resolve().parents[2])
            broker.process.env = {**(broker.process.env or {}), "PYTHONPATH": root}
        return broker

    # -- the topic ----------------------------------------------------------------------

    def create_topic(self, topic: str, partitions: int, configs: Mapping[str, str] | None = None) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        new = NewTopic(
            topic, num_partitions=partitions, replication_factor=3, config={**TOPIC_CONFIGS, **(configs or {})}
        )
        admin.create_topics([new])[topic].result(30)
        wait_for(lambda: self.states(topic, timeout=2), 30, f"every partition of {topic} to have a leader")

    def states(self, topic: str, timeout: float = 2) -> dict[int, tuple[int, int, tuple[int, ...]]] | None:
        """{partition: (leader, leader epoch, sorted ISR)} from one live broker's
        Metadata; None when it does not answer or a partition has no leader."""
        try:
            answer = self.metadata([topic], timeout=timeout)
        except (OSError, ProtocolError):
            return None
        parts = {
            p.partition_index: (p.leader_id, p.leader_epoch, tuple(sorted(p.isr_nodes)))
            for t in answer.topics
            if t.name == topic and t.error_code == 0
            for p in t.partitions
        }
        return parts if parts and all(v[0] >= 0 for v in parts.values()) else None

    def leader_of(self, topic: str, partition: int) -> int:
        states = wait_for(lambda: self.states(topic), 30, f"a leader of {topic}-{partition}")
        return states[partition][0]

    def wait_full_isr(self, topic: str, timeout: float) -> None:
        """Until every live broker's Metadata gives every partition a leader and all n replicas in sync."""
        everyone = tuple(b.node_id for b in self.brokers)

        def full() -> bool:
            for broker in self.live_brokers():
                answer = broker.metadata([topic], timeout=2)
                parts = [p for t in answer.topics if t.name == topic for p in t.partitions]
                if not parts or any(p.leader_id < 0 or tuple(sorted(p.isr_nodes)) != everyone for p in parts):
                    return False
            return True

        wait_for(full, timeout, f"the ISR of every partition of {topic} to be {list(everyone)}", interval=0.25)
