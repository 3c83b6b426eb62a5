"""The cluster metadata interface: a read side every service may use and a
write side for whoever changes topics (the topic administration here; the
controller in cluster mode).

Single-node mode implements both with a file (``local.LocalMetadata``);
cluster mode will implement them on ZooKeeper. Callers hold the metadata
only through these two protocols, never as a dict of topics: a lookup may
then be served from a cache of watched znodes as well as from memory.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol

from .model import BrokerInfo, PartitionState, TopicInfo


class MetadataView(Protocol):
    """What the cluster looks like, as far as this broker knows."""

    @property
    def cluster_id(self) -> str: ...

    @property
    def controller_id(self) -> int:
        """The controller's node id (-1 when none is known)."""
        ...

    def topic(self, name: str) -> TopicInfo | None: ...

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None: ...

    def all_topics(self) -> list[TopicInfo]:
        """Every visible topic (a snapshot: safe to iterate while topics change)."""
        ...

    def partition_state(self, topic: str, index: int) -> PartitionState | None: ...

    def broker(self, node_id: int) -> BrokerInfo | None: ...

    def brokers(self) -> list[BrokerInfo]: ...


class MetadataWriter(Protocol):
    """Changes to the topics. Each is durable before it returns; one that
    cannot be stored raises KafkaError(KAFKA_STORAGE_ERROR) and leaves the
    metadata as it was.

    A topic, or a topic's new partitions, may be written *pending*: stored,
    but invisible to readers until ``publish`` (``abandon`` takes it back),
    so that they appear only once their logs exist."""

    def create_topic(
        self,
        name: str,
        assignment: Sequence[Sequence[int]],
        configs: dict[str, str] | None = None,
        *,
        publish: bool = True,
    ) -> TopicInfo:
        """A new topic whose partition ``i`` has the replicas ``assignment[i]``."""
        ...

    def add_partitions(self, name: str, assignments: Sequence[Sequence[int]]) -> TopicInfo:
        """Pending: the topic grown by one partition per assignment."""
        ...

    def pending_topic(self, name: str) -> TopicInfo | None:
        """The pending topic (or grown topic) of that name, if any."""
        ...

    def publish(self, name: str) -> TopicInfo: ...

    def abandon(self, name: str) -> None: ...

    def delete_topic(self, name: str) -> TopicInfo: ...

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None: ...

    def allocate_producer_ids(self, size: int = 1000) -> range: ...


class TopicTable:
    """The topic lookups of a MetadataView kept as two dicts, ``_topics``
    (by name) and ``_by_id``, which the implementation fills."""

    _topics: dict[str, TopicInfo]
    _by_id: dict[uuid.UUID, TopicInfo]

    def topic(self, name: str) -> TopicInfo | None:
        return self._topics.get(name)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return self._by_id.get(topic_id)

    def all_topics(self) -> list[TopicInfo]:
        return list(self._topics.values())

    def partition_state(self, topic: str, index: int) -> PartitionState | None:
        info = self._topics.get(topic)
        if info is None or not 0 <= index < len(info.partitions):
            return None
        return info.partitions[index].state
