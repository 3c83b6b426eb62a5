"""Single-node cluster metadata, kept in ``cluster-metadata.json`` in one of
the log dirs (the first one when the broker is new; wherever it is found
afterwards, so reordering ``log.dirs`` changes nothing).

Every change is written atomically before it is acknowledged, so a topic a
client saw created is there after any crash; a change whose write fails is
undone in memory too (KAFKA_STORAGE_ERROR), so memory never runs ahead of
the disk. This node is the only broker and the controller; the partitions
it holds are those whose replicas include it, and it leads them.

The file keeps each topic's replica assignment and each partition's state.
A file from before they were kept stands for this node alone: a partition
stored without them has this node as its only replica, leader and ISR.

Loading only reads: the file is written for the first time by ``save``,
once the broker holds its log dirs' locks and has bound its listeners.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.storage.checkpoint import write_atomically
from pybroker.storage.dirs import LogDirError, new_kafka_uuid

from .metadata import TopicTable
from .model import BrokerInfo, PartitionInfo, PartitionState, TopicInfo, new_partition

METADATA_FILE = "cluster-metadata.json"
FILE_VERSION = 2


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


class LocalMetadata(TopicTable):
    """The metadata of a single node: implements MetadataView and MetadataWriter."""

    def __init__(self, path: Path, node_id: int, broker: BrokerInfo, cluster_id: str | None = None):
        """Read ``path`` if it exists; ``cluster_id`` (configured, or agreed
        by the dirs' meta.properties) must match the stored one."""
        self.path = Path(path)
        self.node_id = node_id
        self.this_broker = broker
        self._topics: dict[str, TopicInfo] = {}
        # Written to the file but not yet visible: topics (or a topic's added
        # partitions) whose logs are still being made. Saved with the rest,
        # so a crash meanwhile leaves them to be completed at the next start.
        self._pending: dict[str, TopicInfo] = {}
        self._cluster_id = cluster_id or ""
        self.next_producer_id_block = 0
        # Per-user configs as Kafka keeps them in /config/users/<user>:
        # SCRAM credentials (and quotas), {user: {key: value}}.
        self.users: dict[str, dict[str, str]] = {}
        # And as in /config/clients/<client-id> and
        # /config/users/<user>/clients/<client-id>: quotas ("<default>":
        # every user or client id). Told to ``on_entity_configs``.
        self.clients: dict[str, dict[str, str]] = {}
        self.user_clients: dict[str, dict[str, dict[str, str]]] = {}
        self.on_entity_configs: Callable[[], None] | None = None
        if self.path.exists():
            self._read(cluster_id)
        if not self._cluster_id:
            self._cluster_id = new_kafka_uuid()
        self._by_id = {t.topic_id: t for t in self._topics.values()}

    def _read(self, cluster_id: str | None) -> None:
        try:
            data = json.loads(self.path.read_text())
            stored = data["cluster_id"]
            self.next_producer_id_block = int(data.get("next_producer_id_block", 0))
            topics = [topic_from_json(t, self.node_id) for t in data["topics"]]
            users = {str(u): {str(k): str(v) for k, v in c.items()} for u, c in data.get("users", {}).items()}
            clients = {str(n): {str(k): str(v) for k, v in c.items()} for n, c in data.get("clients", {}).items()}
            user_clients = {
                str(u): {str(n): {str(k): str(v) for k, v in c.items()} for n, c in by_client.items()}
                for u, by_client in data.get("user_clients", {}).items()
            }
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            raise LogDirError(f"cannot read the cluster metadata in {self.path}: {reason}") from None
        if cluster_id and stored and cluster_id != stored:
            raise LogDirError(
                f"The Cluster ID {cluster_id} doesn't match stored clusterId {stored} in {self.path}. "
                "The broker is trying to join the wrong cluster."
            )
        self._cluster_id = stored or self._cluster_id
        self.users = users
        self.clients = clients
        self.user_clients = user_clients
        for info in topics:
            self._topics[info.name] = info

    # -- MetadataView ------------------------------------------------------------

    @property
    def cluster_id(self) -> str:
        return self._cluster_id

    @property
    def controller_id(self) -> int:
        return self.node_id

    def broker(self, node_id: int) -> BrokerInfo | None:
        return self.this_broker if node_id == self.node_id else None

    def brokers(self) -> list[BrokerInfo]:
        return [self.this_broker]

    # -- MetadataWriter ----------------------------------------------------------

    def create_topic(
        self,
        name: str,
        assignment: Sequence[Sequence[int]],
        configs: dict[str, str] | None = None,
        *,
        publish: bool = True,
    ) -> TopicInfo:
        """Persist a new topic; visible at once, or with ``publish=False``
        only once ``publish`` is called (``abandon`` undoes it)."""
        topic_id = uuid.uuid4()
        pending_ids = {t.topic_id for t in self._pending.values()}
        while topic_id in self._by_id or topic_id in pending_ids or topic_id.int == 0:
            topic_id = uuid.uuid4()
        parts = [new_partition(i, list(replicas)) for i, replicas in enumerate(assignment)]
        info = TopicInfo(name, topic_id, parts, dict(configs or {}))
        if publish:
            self._remember(info)
            self._save_or(lambda: self._forget(info))
        else:
            self._pending[name] = info
            self._save_or(lambda: self._pending.pop(name))
        return info

    def add_partitions(self, name: str, assignments: Sequence[Sequence[int]]) -> TopicInfo:
        """Persist new partitions for a topic, one per assignment; they
        become visible with ``publish`` (the topic as it will be is returned)."""
        info = self._topics[name]
        first = len(info.partitions)
        new = [new_partition(first + i, list(replicas)) for i, replicas in enumerate(assignments)]
        grown = TopicInfo(info.name, info.topic_id, info.partitions + new, info.configs)
        self._pending[name] = grown
        self._save_or(lambda: self._pending.pop(name))
        return grown

    def pending_topic(self, name: str) -> TopicInfo | None:
        return self._pending.get(name)

    def publish(self, name: str) -> TopicInfo:
        """Make a pending topic (or its added partitions) visible; it is on disk already."""
        info = self._pending.pop(name)
        self._remember(info)
        return info

    def abandon(self, name: str) -> None:
        """Forget a pending topic or partition addition whose logs could not be made."""
        self._pending.pop(name, None)
        self._save_or(lambda: None)

    def delete_topic(self, name: str) -> TopicInfo:
        info = self._topics.pop(name)
        self._by_id.pop(info.topic_id, None)
        pending = self._pending.pop(name, None)

        def undo():
            self._remember(info)
            if pending is not None:
                self._pending[name] = pending

        self._save_or(undo)
        return info

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        info = self._topics[name]
        old = info.configs
        info.configs = dict(configs)
        self._save_or(lambda: setattr(info, "configs", old))

    def set_user_configs(self, user: str, configs: dict[str, str]) -> None:
        old = self.users.get(user)
        if configs:
            self.users[user] = dict(configs)
        else:
            self.users.pop(user, None)
        self._save_or(lambda: self.users.update({user: old}) if old is not None else self.users.pop(user, None))
        self._entity_configs_changed()

    def set_entity_configs(self, changes: dict[tuple[str | None, str | None], dict[str, str]]) -> None:
        """Store the configs of users, client ids and users' client ids at
        once ({(user or None, client id or None): configs}; empty: removed)."""
        before = (
            {u: dict(c) for u, c in self.users.items()},
            {n: dict(c) for n, c in self.clients.items()},
            {u: {n: dict(c) for n, c in by.items()} for u, by in self.user_clients.items()},
        )
        for (user, client), configs in changes.items():
            if client is None:
                table, name = self.users, user
            elif user is None:
                table, name = self.clients, client
            else:
                table, name = self.user_clients.setdefault(user, {}), client
            if configs:
                table[name] = dict(configs)
            else:
                table.pop(name, None)
            if user is not None and client is not None and not self.user_clients[user]:
                del self.user_clients[user]

        def undo():
            self.users, self.clients, self.user_clients = before

        self._save_or(undo)
        self._entity_configs_changed()

    def _entity_configs_changed(self) -> None:
        if self.on_entity_configs is not None:
            self.on_entity_configs()

    def allocate_producer_ids(self, size: int = 1000) -> range:
        """A block of producer ids never handed out before, even across
        restarts: the block is persisted before any id in it is used."""
        start = self.next_producer_id_block
        self.next_producer_id_block = start + size
        self._save_or(lambda: setattr(self, "next_producer_id_block", start))
        return range(start, start + size)

    # -- the file ----------------------------------------------------------------

    def _forget(self, info: TopicInfo) -> None:
        self._topics.pop(info.name, None)
        self._by_id.pop(info.topic_id, None)

    def _remember(self, info: TopicInfo) -> None:
        self._topics[info.name] = info
        self._by_id[info.topic_id] = info

    def _save_or(self, undo: Callable[[], None]) -> None:
        try:
            self.save()
        except OSError as exc:
            undo()
            raise KafkaError(
                ErrorCode.KAFKA_STORAGE_ERROR,
                f"cannot write the cluster metadata in {self.path}: {exc.strerror or exc}",
            ) from exc

    def save(self) -> None:
        topics = {**self._topics, **self._pending}
        data = {
            "version": FILE_VERSION,
            "cluster_id": self._cluster_id,
            "next_producer_id_block": self.next_producer_id_block,
            "topics": [topic_to_json(t) for t in topics.values()],
            "users": self.users,
            "clients": self.clients,
            "user_clients": self.user_clients,
        }
        write_atomically(self.path, json.dumps(data, indent=1, sort_keys=True).encode())


def topic_to_json(info: TopicInfo) -> dict:
    """A topic as stored: its assignment and partition states shaped as
    Kafka's topic and partition-state znodes."""
    return {
        "name": info.name,
        "id": str(info.topic_id),
        "configs": info.configs,
        "partitions": [
            {
                "index": p.index,
                "replicas": p.replicas,
                "state": {
                    "leader": p.state.leader,
                    "leader_epoch": p.state.leader_epoch,
                    "isr": p.state.isr,
                    "controller_epoch": p.state.controller_epoch,
                    "version": p.state.version,
                },
            }
            for p in info.partitions
        ],
    }


def topic_from_json(data: dict, node_id: int) -> TopicInfo:
    """A stored topic. The first version of the file kept the leader, epoch
    and ISR flat beside the replicas; what is missing stands for this node."""
    partitions = []
    for p in data["partitions"]:
        replicas = [int(n) for n in p.get("replicas") or [node_id]]
        s = p.get("state")
        if s is None:
            leader, epoch, isr = int(p.get("leader", node_id)), int(p.get("epoch", 0)), p.get("isr") or [node_id]
            state = PartitionState(leader, epoch, [int(n) for n in isr])
        else:
            state = PartitionState(
                int(s["leader"]),
                int(s["leader_epoch"]),
                [int(n) for n in s["isr"]],
                int(s.get("controller_epoch", 0)),
                int(s.get("version", 0)),
            )
        partitions.append(PartitionInfo(int(p["index"]), replicas, state))
    return TopicInfo(data["name"], uuid.UUID(data["id"]), partitions, dict(data.get("configs", {})))
