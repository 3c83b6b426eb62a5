"""Topic administration: creating, growing and deleting topics, and
their configs — the service ``topics`` (cluster.admin.TopicAdmin) that
the admin handlers, Metadata's auto-creation and the group coordinator
use.

A topic is made in two steps: its metadata is written unpublished, its
partitions' logs are made (in a worker thread for a large topic), then it
is published whole; if the logs cannot be made, the metadata is
abandoned and nothing is left behind. A deleted topic is gone from the
metadata and the replica manager at once; its logs are closed and renamed
``*-delete`` a chunk at a time, and removed in a worker thread, while its
name stays reserved. A node opens only the partitions whose replicas
include it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.storage.config import LogConfig
from pybroker.storage.manager import LogManager, discard_new_logs, open_new_logs, remove_detached

from .cluster.admin import topic_name_problem
from .cluster.local import LocalMetadata
from .cluster.model import TopicInfo
from .cluster.placement import assign_replicas
from .config import BrokerConfig
from .replica import ReplicaManager
from .topic_configs import INTERNAL_METADATA_TOPIC

log = logging.getLogger("pybroker.topics")

# Partition logs closed and renamed between two turns of the event loop.
DETACH_CHUNK = 100


def usable_configs(base: LogConfig, topic: str, configs: dict[str, str]) -> dict[str, str]:
    """``configs`` without the overrides Kafka's rules refuse (each dropped
    with a warning, the broker's default applying instead): a refused
    config stored earlier, or written to ZooKeeper by another tool, must
    not keep its topic's logs from opening."""
    usable = dict(configs)
    for key, value in configs.items():
        try:
            LogConfig.from_props({key: value}, base=base)
        except ValueError as exc:
            log.warning("topic %s: dropping its stored config %s=%r: %s", topic, key, value, exc)
            del usable[key]
    try:
        LogConfig.from_props(usable, base=base)
    except ValueError as exc:
        log.warning("topic %s: dropping its stored configs %s: %s", topic, usable, exc)
        usable.clear()
    return usable


class Topics:
    def __init__(self, config: BrokerConfig, metadata: LocalMetadata, replicas: ReplicaManager):
        self.config = config
        self.node_id = config.node_id
        self.metadata = metadata
        self.replicas = replicas
        self.logs: LogManager | None = None  # once the logs are open
        self.creating: set[str] = set()  # topics whose logs are being made or detached
        self.admin_lock = trio.Lock()
        # Where detached logs are removed: the broker's nursery while it runs.
        self.nursery: trio.Nursery | None = None

    def drop_refused_overrides(self, info: TopicInfo) -> None:
        """A topic config stored by an older version that Kafka's rules now
        refuse (``flush.ms=-1``, say) would keep the broker from starting:
        drop it, with a warning, and let the broker's default apply."""
        usable = usable_configs(self.config.log_config, info.name, info.configs)
        if usable != info.configs:
            info.configs.clear()
            info.configs.update(usable)

    def log_config_for(self, topic: str) -> LogConfig:
        info = self.metadata.topic(topic)
        return LogConfig.from_props(info.configs if info else {}, base=self.config.log_config)

    def hosted(self, partitions):
        """The partitions whose replicas include this node: the ones it holds."""
        return [p for p in partitions if self.node_id in p.replicas]

    def open_all(self) -> None:
        """Host every partition of every topic this node is a replica of."""
        for topic in self.metadata.all_topics():
            self._open_topic(topic)

    def _open_topic(self, topic: TopicInfo) -> None:
        cfg = self.log_config_for(topic.name)
        for p in self.hosted(topic.partitions):
            plog = self.logs.get(topic.name, p.index) or self.logs.create(topic.name, p.index, cfg, topic.topic_id)
            self.replicas.add(topic.name, p.index, plog, p)

    def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None) -> TopicInfo:
        """Create a small topic at once (auto-creation, internal topics); the
        caller has validated name, count and configs. Raises
        KafkaError(KAFKA_STORAGE_ERROR), with nothing left behind, when its
        metadata or logs cannot be made. One replica each: replication
        factors for these topics come with cluster mode."""
        assignment = assign_replicas([b.node_id for b in self.metadata.brokers()], partitions, 1)
        info = self.metadata.create_topic(name, assignment, configs, publish=False)
        try:
            parts, paths, cfg = self._plan_logs(info, 0)
            logs = open_new_logs(paths, cfg, info.topic_id)
        except OSError as exc:
            raise self._give_up(info, exc) from exc
        return self._publish(info, 0, parts, logs)

    async def create_topic_async(
        self,
        name: str,
        assignment: Sequence[Sequence[int]],
        configs: dict[str, str] | None = None,
        *,
        deadline: float | None = None,
    ) -> TopicInfo:
        """Create a topic whose logs are made in a worker thread, so that
        thousands of partitions do not stall the event loop; it becomes
        visible, whole, when they are all made. The name stays reserved
        (``creating``) meanwhile. A single node does not wait on
        ``deadline``: the topic is whole when this returns."""
        self.creating.add(name)
        try:
            info = self.metadata.create_topic(name, assignment, configs, publish=False)
            done = await self._make_logs_off_loop(info, 0)
            assert done is not None  # nothing can delete a topic not yet visible
            return done
        finally:
            self.creating.discard(name)

    async def add_partitions(
        self, name: str, assignments: Sequence[Sequence[int]], *, deadline: float | None = None
    ) -> TopicInfo | None:
        """Grow a topic by one partition per assignment (logs made off the
        loop); None if the topic was deleted meanwhile. Callers serialise
        with ``admin_lock``; the name is reserved so that a deletion and a
        new topic of the same name cannot meet the logs being made."""
        first = len(self.metadata.topic(name).partitions)
        self.creating.add(name)
        try:
            grown = self.metadata.add_partitions(name, assignments)
            return await self._make_logs_off_loop(grown, first)
        finally:
            self.creating.discard(name)

    async def _make_logs_off_loop(self, info: TopicInfo, first: int) -> TopicInfo | None:
        try:
            parts, paths, cfg = self._plan_logs(info, first)
            logs = await trio.to_thread.run_sync(open_new_logs, paths, cfg, info.topic_id)
        except OSError as exc:
            raise self._give_up(info, exc) from exc
        if self.metadata.pending_topic(info.name) is not info:  # deleted meanwhile
            discard_new_logs(logs)
            return None
        return self._publish(info, first, parts, logs)

    def _plan_logs(self, info: TopicInfo, first: int):
        """This node's partitions from ``first``, their new log paths and their config."""
        parts = self.hosted(info.partitions[first:])
        dirs = self.logs.place(len(parts))
        paths = [d / f"{info.name}-{p.index}" for d, p in zip(dirs, parts)]
        return parts, paths, LogConfig.from_props(info.configs, base=self.config.log_config)

    def _publish(self, info: TopicInfo, first_index: int, parts, logs) -> TopicInfo:
        for p, plog in zip(parts, logs):
            self.logs.adopt((info.name, p.index), plog)
            self.replicas.add(info.name, p.index, plog, p)
        self.metadata.publish(info.name)
        if first_index == 0:
            log.info("created topic %s with %d partitions", info.name, len(info.partitions))
        else:
            log.info("topic %s now has %d partitions", info.name, len(info.partitions))
        return info

    def _give_up(self, info: TopicInfo, exc: OSError) -> KafkaError:
        log.error("cannot create the logs of %s: %s", info.name, exc)
        self.metadata.abandon(info.name)
        return KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, f"cannot create the logs of {info.name}: {exc}")

    def auto_create_topic(self, name: str) -> TopicInfo | None:
        """Kafka's auto-creation: never of an illegal name, of a topic being
        made, or of ``__cluster_metadata`` (KRaft's own log, not a topic)."""
        if not self.config["auto.create.topics.enable"] or topic_name_problem(name) or name in self.creating:
            return None
        if name == INTERNAL_METADATA_TOPIC:
            return None
        try:
            return self.create_topic(name, self.config["num.partitions"])
        except KafkaError:
            return None  # logged; the client sees an unknown topic and retries

    def delete_topic(self, name: str) -> TopicInfo:
        """Forget a topic: gone from the metadata, its partitions no longer
        served, its producer state dropped. Its logs stay open, and its
        name reserved, until ``detach_logs`` has closed them and renamed
        their directories."""
        info = self.metadata.delete_topic(name)
        self.creating.add(name)
        for p in info.partitions:
            self.replicas.remove(name, p.index)
        log.info("deleted topic %s", name)
        return info

    async def detach_logs(self, info: TopicInfo, *, deadline: float | None = None) -> None:
        """Close a deleted topic's logs and rename their directories
        ``*-delete`` a chunk at a time, then have their files removed in a
        worker thread; the name is free again once all are renamed."""
        detached = []
        try:
            for n, p in enumerate(info.partitions, 1):
                path = self.logs.detach(info.name, p.index)
                if path is not None:
                    detached.append(path)
                if n % DETACH_CHUNK == 0:
                    await trio.lowlevel.checkpoint()
        finally:
            self.creating.discard(info.name)
            self.remove_later(detached)

    def remove_later(self, paths: list) -> None:
        """Remove detached directories in a worker thread (at once when the
        broker is not running)."""
        if self.nursery is None:
            remove_detached(paths)
        elif paths:
            self.nursery.start_soon(trio.to_thread.run_sync, remove_detached, paths)

    def reserved_names(self) -> AbstractSet[str]:
        return self.creating

    def reserve_names(self, names: Sequence[str]) -> None:
        self.creating.update(names)

    def release_names(self, names: Sequence[str]) -> None:
        self.creating.difference_update(names)

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        """Applied on return (the protocol's None)."""
        self.metadata.set_topic_configs(name, configs)
        self.logs.update_config(name, self.log_config_for(name))
