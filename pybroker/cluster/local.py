"""Single-node cluster metadata, kept in ``cluster-metadata.json`` in one of
the log dirs (the first one when the broker is new; wherever it is found
afterwards, so reordering ``log.dirs`` changes nothing).

Every change is written atomically before it is acknowledged, so a topic a
client saw created is there after any crash; a change whose write fails is
undone in memory too (StorageFailure), so memory never runs ahead of the
disk. This node is every partition's leader and the controller.

Loading only reads: the file is written for the first time by ``save``,
once the broker holds its log dirs' locks and has bound its listeners.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

from pybroker.storage.checkpoint import write_atomically
from pybroker.storage.dirs import LogDirError, new_kafka_uuid

from .model import BrokerInfo, PartitionInfo, TopicInfo

METADATA_FILE = "cluster-metadata.json"


class StorageFailure(Exception):
    """Metadata or logs could not be written; Kafka answers KAFKA_STORAGE_ERROR."""


def find_metadata_file(log_dirs: list[Path], has_partitions: Callable[[Path], bool]) -> Path:
    """Where the metadata is, or is to be written. Refuses (LogDirError) a
    layout it cannot be sure of: the file in two dirs, or no file while a
    dir holds partitions (the dir with it is missing from ``log.dirs``, or
    these are another broker's logs), rather than treat the partitions as
    unknown."""
    found = [d / METADATA_FILE for d in log_dirs if (d / METADATA_FILE).exists()]
    if len(found) > 1:
        raise LogDirError(
            f"cluster metadata found in more than one log dir ({', '.join(map(str, found))}); "
            "keep only the current one"
        )
    if found:
        return found[0]
    for d in log_dirs:
        if has_partitions(d):
            raise LogDirError(
                f"{d} holds partition directories but no log dir holds {METADATA_FILE}: if it is in a "
                "directory missing from log.dirs, add that directory back; pybroker does not adopt "
                "partitions it has no metadata for"
            )
    return log_dirs[0] / METADATA_FILE


class LocalMetadata:
    def __init__(self, path: Path, node_id: int, broker: BrokerInfo, cluster_id: str | None = None):
        """Read ``path`` if it exists; ``cluster_id`` (configured, or agreed
        by the dirs' meta.properties) must match the stored one."""
        self.path = Path(path)
        self.node_id = node_id
        self.broker = broker
        self.topics: dict[str, TopicInfo] = {}
        # Written to the file but not yet visible: topics (or a topic's added
        # partitions) whose logs are still being made. Saved with the rest,
        # so a crash meanwhile leaves them to be completed at the next start.
        self.pending: dict[str, TopicInfo] = {}
        self.cluster_id = cluster_id or ""
        self.next_producer_id_block = 0
        if self.path.exists():
            self._read(cluster_id)
        if not self.cluster_id:
            self.cluster_id = new_kafka_uuid()
        self._by_id = {t.topic_id: t for t in self.topics.values()}

    def _read(self, cluster_id: str | None) -> None:
        try:
            data = json.loads(self.path.read_text())
            stored = data["cluster_id"]
            self.next_producer_id_block = int(data.get("next_producer_id_block", 0))
            topics = [TopicInfo.from_json(t) for t in data["topics"]]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            raise LogDirError(f"cannot read the cluster metadata in {self.path}: {reason}") from None
        if cluster_id and stored and cluster_id != stored:
            raise LogDirError(
                f"The Cluster ID {cluster_id} doesn't match stored clusterId {stored} in {self.path}. "
                "The broker is trying to join the wrong cluster."
            )
        self.cluster_id = stored or self.cluster_id
        for info in topics:
            self.topics[info.name] = info

    @property
    def controller_id(self) -> int:
        return self.node_id

    def brokers(self) -> list[BrokerInfo]:
        return [self.broker]

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return self._by_id.get(topic_id)

    def create_topic(
        self, name: str, partitions: int, configs: dict[str, str] | None = None, *, publish: bool = True
    ) -> TopicInfo:
        """Persist a new topic; visible at once, or with ``publish=False``
        only once ``publish`` is called (``abandon`` undoes it)."""
        topic_id = uuid.uuid4()
        pending_ids = {t.topic_id for t in self.pending.values()}
        while topic_id in self._by_id or topic_id in pending_ids or topic_id.int == 0:
            topic_id = uuid.uuid4()
        parts = [PartitionInfo(i, self.node_id, 0, [self.node_id], [self.node_id]) for i in range(partitions)]
        info = TopicInfo(name, topic_id, parts, dict(configs or {}))
        if publish:
            self._remember(info)
            self._save_or(lambda: self._forget(info))
        else:
            self.pending[name] = info
            self._save_or(lambda: self.pending.pop(name))
        return info

    def publish(self, name: str) -> TopicInfo:
        """Make a pending topic (or its added partitions) visible; it is on disk already."""
        info = self.pending.pop(name)
        self._remember(info)
        return info

    def abandon(self, name: str) -> None:
        """Forget a pending topic or partition addition whose logs could not be made."""
        self.pending.pop(name, None)
        self._save_or(lambda: None)

    def delete_topic(self, name: str) -> TopicInfo:
        info = self.topics.pop(name)
        self._by_id.pop(info.topic_id, None)
        pending = self.pending.pop(name, None)

        def undo():
            self._remember(info)
            if pending is not None:
                self.pending[name] = pending

        self._save_or(undo)
        return info

    def _forget(self, info: TopicInfo) -> None:
        self.topics.pop(info.name, None)
        self._by_id.pop(info.topic_id, None)

    def _remember(self, info: TopicInfo) -> None:
        self.topics[info.name] = info
        self._by_id[info.topic_id] = info

    def add_partitions(self, name: str, total: int) -> TopicInfo:
        """Persist ``total`` partitions for a topic; the new ones become
        visible with ``publish`` (the topic as it will be is returned)."""
        info = self.topics[name]
        first = len(info.partitions)
        new = [PartitionInfo(i, self.node_id, 0, [self.node_id], [self.node_id]) for i in range(first, total)]
        grown = TopicInfo(info.name, info.topic_id, info.partitions + new, info.configs)
        self.pending[name] = grown
        self._save_or(lambda: self.pending.pop(name))
        return grown

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        info = self.topics[name]
        old = info.configs
        info.configs = dict(configs)
        self._save_or(lambda: setattr(info, "configs", old))

    def allocate_producer_ids(self, size: int = 1000) -> range:
        """A block of producer ids never handed out before, even across
        restarts: the block is persisted before any id in it is used."""
        start = self.next_producer_id_block
        self.next_producer_id_block = start + size
        self._save_or(lambda: setattr(self, "next_producer_id_block", start))
        return range(start, start + size)

    def _save_or(self, undo: Callable[[], None]) -> None:
        try:
            self.save()
        except OSError as exc:
            undo()
            raise StorageFailure(f"cannot write the cluster metadata in {self.path}: {exc.strerror or exc}") from exc

    def save(self) -> None:
        topics = {**self.topics, **self.pending}
        data = {
            "version": 1,
            "cluster_id": self.cluster_id,
            "next_producer_id_block": self.next_producer_id_block,
            "topics": [t.to_json() for t in topics.values()],
        }
        write_atomically(self.path, json.dumps(data, indent=1, sort_keys=True).encode())
