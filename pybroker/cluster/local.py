"""Single-node cluster metadata, kept in ``<first log dir>/cluster-metadata.json``.

Every change is written atomically before it is acknowledged, so a topic a
client saw created is there after any crash. This node is every partition's
leader and the controller.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from storage.checkpoint import write_atomically

from .model import BrokerInfo, PartitionInfo, TopicInfo

METADATA_FILE = "cluster-metadata.json"
META_PROPERTIES = "meta.properties"


class LocalMetadata:
    def __init__(self, data_dir: Path, node_id: int, broker: BrokerInfo, cluster_id: str | None = None):
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(data_dir) / METADATA_FILE
        self.node_id = node_id
        self.broker = broker
        self.topics: dict[str, TopicInfo] = {}
        self.cluster_id = cluster_id or ""
        self.next_producer_id_block = 0
        if self.path.exists():
            data = json.loads(self.path.read_text())
            self.cluster_id = cluster_id or data["cluster_id"]
            self.next_producer_id_block = data.get("next_producer_id_block", 0)
            for t in data["topics"]:
                info = TopicInfo.from_json(t)
                self.topics[info.name] = info
        if not self.cluster_id:
            self.cluster_id = _new_cluster_id()
        self._by_id = {t.topic_id: t for t in self.topics.values()}
        self._save()
        _write_meta_properties(Path(data_dir), node_id, self.cluster_id)

    @property
    def controller_id(self) -> int:
        return self.node_id

    def brokers(self) -> list[BrokerInfo]:
        return [self.broker]

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return self._by_id.get(topic_id)

    def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None) -> TopicInfo:
        topic_id = uuid.uuid4()
        while topic_id in self._by_id or topic_id.int == 0:
            topic_id = uuid.uuid4()
        parts = [PartitionInfo(i, self.node_id, 0, [self.node_id], [self.node_id]) for i in range(partitions)]
        info = TopicInfo(name, topic_id, parts, dict(configs or {}))
        self.topics[name] = info
        self._by_id[topic_id] = info
        self._save()
        return info

    def delete_topic(self, name: str) -> TopicInfo:
        info = self.topics.pop(name)
        self._by_id.pop(info.topic_id, None)
        self._save()
        return info

    def add_partitions(self, name: str, total: int) -> list[PartitionInfo]:
        info = self.topics[name]
        new = [PartitionInfo(i, self.node_id, 0, [self.node_id], [self.node_id]) for i in range(len(info.partitions), total)]
        info.partitions.extend(new)
        self._save()
        return new

    def remove_partitions_from(self, name: str, first: int) -> None:
        """Undo add_partitions whose logs could not be created."""
        del self.topics[name].partitions[first:]
        self._save()

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        self.topics[name].configs = dict(configs)
        self._save()

    def allocate_producer_ids(self, size: int = 1000) -> range:
        """A block of producer ids never handed out before, even across
        restarts: the block is persisted before any id in it is used."""
        start = self.next_producer_id_block
        self.next_producer_id_block = start + size
        self._save()
        return range(start, start + size)

    def _save(self) -> None:
        data = {
            "version": 1,
            "cluster_id": self.cluster_id,
            "next_producer_id_block": self.next_producer_id_block,
            "topics": [t.to_json() for t in self.topics.values()],
        }
        write_atomically(self.path, json.dumps(data, indent=1, sort_keys=True).encode())


def _new_cluster_id() -> str:
    # Kafka's cluster ids are 16 random bytes in URL-safe base64 without padding.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _write_meta_properties(data_dir: Path, node_id: int, cluster_id: str) -> None:
    text = f"version=1\nnode.id={node_id}\ncluster.id={cluster_id}\n"
    path = data_dir / META_PROPERTIES
    if not path.exists() or path.read_text() != text:
        write_atomically(path, text.encode())
