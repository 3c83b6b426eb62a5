"""Plain records describing the cluster; no behaviour.

They follow Kafka's ZooKeeper layout (design/CLUSTER.md §B.1), so that the
ZooKeeper implementation of the metadata maps each record to one znode:
a topic and its replica assignment (``/brokers/topics/<t>``), the state of
each partition (``/brokers/topics/<t>/partitions/<p>/state``), a broker
(``/brokers/ids/<n>``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

# Kafka's internal topics: reported is_internal, closed to DeleteRecords.
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})

NO_LEADER = -1


@dataclass(frozen=True)
class BrokerInfo:
    """A broker: its inter-broker address (``host``, ``port``), and every
    advertised listener's, ``endpoints`` (name, host, port); clients are
    given the address of the listener they came in on."""

    node_id: int
    host: str
    port: int
    rack: str | None = None
    endpoints: tuple[tuple[str, str, int], ...] = field(default=(), compare=False)

    def address(self, listener: str | None) -> tuple[str, int] | None:
        """(host, port) of ``listener``; None when the broker does not
        advertise it (Kafka leaves such a broker out of what it answers
        on that listener). Without endpoints (or a listener), the
        inter-broker address."""
        if listener is None or not self.endpoints:
            return self.host, self.port
        for name, host, port in self.endpoints:
            if name == listener:
                return host, port
        return None


@dataclass
class PartitionState:
    """Who leads a partition and who is in sync with it."""

    leader: int
    leader_epoch: int
    isr: list[int]
    # The epoch of the controller that last wrote it, and the partition
    # epoch (the state znode's version): what a newer state is told by.
    controller_epoch: int = 0
    version: int = 0


@dataclass
class PartitionInfo:
    """One partition: its replica assignment (the brokers meant to hold
    it, the preferred leader first) and its current state."""

    index: int
    replicas: list[int]
    state: PartitionState
    # Replicas known to be on a failed log dir (not stored).
    offline: list[int] = field(default_factory=list)

    @property
    def leader(self) -> int:
        return self.state.leader

    @property
    def leader_epoch(self) -> int:
        return self.state.leader_epoch

    @property
    def isr(self) -> list[int]:
        return self.state.isr


def new_partition(index: int, replicas: list[int]) -> PartitionInfo:
    """A partition as created: led by its first replica, every replica in
    sync (it has no data yet), epoch 0."""
    return PartitionInfo(index, list(replicas), PartitionState(replicas[0], 0, list(replicas)))


@dataclass
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: list[PartitionInfo]
    configs: dict[str, str] = field(default_factory=dict)  # topic-level overrides only

    @property
    def is_internal(self) -> bool:
        return self.name in INTERNAL_TOPICS

    @property
    def assignment(self) -> dict[int, list[int]]:
        """Partition index -> its replicas (the topic znode's ``partitions``)."""
        return {p.index: list(p.replicas) for p in self.partitions}
