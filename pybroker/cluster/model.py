"""Plain records describing the cluster; no behaviour."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


# Kafka's internal topics: reported is_internal, closed to DeleteRecords.
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})


@dataclass(frozen=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass
class PartitionInfo:
    index: int
    leader: int
    leader_epoch: int
    replicas: list[int]
    isr: list[int]
    offline: list[int] = field(default_factory=list)


@dataclass
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: list[PartitionInfo]
    configs: dict[str, str] = field(default_factory=dict)  # topic-level overrides only

    @property
    def is_internal(self) -> bool:
        return self.name in INTERNAL_TOPICS

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "id": str(self.topic_id),
            "configs": self.configs,
            "partitions": [
                {"index": p.index, "leader": p.leader, "epoch": p.leader_epoch, "replicas": p.replicas, "isr": p.isr}
                for p in self.partitions
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> TopicInfo:
        return cls(
            data["name"],
            uuid.UUID(data["id"]),
            [PartitionInfo(p["index"], p["leader"], p["epoch"], p["replicas"], p["isr"]) for p in data["partitions"]],
            dict(data.get("configs", {})),
        )
