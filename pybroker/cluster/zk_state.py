"""Cluster mode: the partitions this broker holds, kept to what ZooKeeper says.

``ZkHosting`` is the metadata cache's host (``zk_metadata.Host``): before
each new view is published it makes the logs of partitions newly
assigned here (in a worker thread when there are many), adds them to the
replica manager, gives every hosted partition its state's leader epoch
and its role — leader when the state names this broker, follower
otherwise — and removes the replicas of topics that are gone, closing
their logs and moving them aside for removal as a single node's
DeleteTopics does. Topic config changes reach the logs here too.

A follower copies its leader: every partition hosted as a follower of
a live leader is handed to the replica fetchers (``fetchers.follow``,
replica/fetcher.py), again at each new leader epoch; one that comes to
lead, loses its leader, or is removed is taken from them
(``unfollow``). A follower answers clients NOT_LEADER_OR_FOLLOWER.

After the view is published, leadership of ``__consumer_offsets``
partitions moves the group coordinator's: a partition this broker comes
to lead is loaded (``load_partition``), one it stops leading is
unloaded (``unload_partition``: its members are answered NOT_COORDINATOR
and go to the new coordinator).

When the ZooKeeper session expires every leadership is dropped at once
(this broker is no longer registered, so another may be made leader):
the partitions stay hosted as followers, fetching from no one, until
the new session's full re-read gives them back what ZooKeeper says.
"""

from __future__ import annotations

import logging
import uuid

import trio

from pybroker.storage.config import LogConfig
from pybroker.storage.manager import LogManager, open_new_logs, remove_detached

from ..groups import OFFSETS_TOPIC, now_ms
from ..replica import ReplicaManager, Role
from ..topics import DETACH_CHUNK, usable_configs
from ..txn.coordinator import TXN_TOPIC
from .model import PartitionInfo, TopicInfo
from .zk_metadata import Host, Update

log = logging.getLogger("pybroker.cluster")

# New logs of one topic made on the event loop; more go to a worker thread.
INLINE_NEW_LOGS = 8


class ZkHosting(Host):
    def __init__(self, config, replicas: ReplicaManager):
        self.config = config
        self.node_id = config.node_id
        self.replicas = replicas
        self.logs: LogManager | None = None  # once open
        self.groups = None  # the group coordinator, once built
        self.fetchers = None  # the replica fetchers (replica/fetcher.py), once built
        self.metadata = None  # the view (ZkMetadata) once published
        self.nursery: trio.Nursery | None = None  # where detached logs are removed
        # The id of the topic whose replicas are hosted under each name.
        self.hosted_ids: dict[str, uuid.UUID] = {}
        self.leading_offsets: set[int] = set()
        self.txns = None  # the transaction coordinator, once built
        self.leading_txn: dict[int, int] = {}  # partition -> the leader epoch it was loaded at
        # False from a session expiry until this broker is registered again.
        self.registered = True
        # Set by a controlled shutdown: followers stop copying their leaders,
        # so that no leader takes this broker back into its ISR.
        self.leaving = False

    # -- what the logs are opened with -------------------------------------------

    def log_config(self, info: TopicInfo) -> LogConfig:
        base = self.config.log_config
        return LogConfig.from_props(usable_configs(base, info.name, info.configs), base=base)

    def assigned_here(self, topics: list[TopicInfo]) -> set[tuple[str, int]]:
        """The partitions whose replicas include this broker: the logs it keeps."""
        return {(t.name, p.index) for t in topics for p in t.partitions if self.node_id in p.replicas}

    def role(self, p: PartitionInfo) -> Role:
        return Role.LEADER if p.state.leader == self.node_id and self.registered else Role.FOLLOWER

    def follow(self, part) -> None:
        """Hand ``part`` to the fetchers if it follows a leader, take it
        from them otherwise (it leads, or has no leader)."""
        fetchers = self.fetchers
        if fetchers is None:
            return
        leader = part.info.leader
        if part.role is Role.FOLLOWER and leader >= 0 and leader != self.node_id and self.registered and not self.leaving:
            fetchers.follow(part, leader)
        else:
            fetchers.unfollow(part)

    # -- before a view is published ----------------------------------------------

    async def prepare(self, update: Update) -> None:
        for info in update.deleted:
            if self.hosted_ids.get(info.name) == info.topic_id:
                await self._unhost(info.name)
        if update.full:
            for name in [n for n in self.hosted_ids if n not in update.topics]:
                await self._unhost(name)
        names = update.topics if update.full else update.changed
        for name in sorted(names):
            info = update.topics.get(name)
            if info is None:
                continue
            hosted = self.hosted_ids.get(name)
            if hosted is not None and hosted != info.topic_id:
                await self._unhost(name)  # the name now belongs to another topic
            await self._host(info, configs_changed=name in update.configs)

    async def _host(self, info: TopicInfo, configs_changed: bool) -> None:
        name = info.name
        config = self.log_config(info)
        missing: list[PartitionInfo] = []
        gone = []
        for p in info.partitions:
            part = self.replicas.partition(name, p.index)
            if self.node_id not in p.replicas:
                if part is not None:
                    gone.append(p.index)
                continue
            role = self.role(p)
            if part is None:
                plog = self.logs.get(name, p.index)
                if plog is None:
                    missing.append(p)
                else:
                    plog.config = config
                    part = self.replicas.add(name, p.index, plog, p)
                    part.become(p, role)
                    self.follow(part)
            else:
                if part.info is not p or part.role is not role:
                    if part.role is not role:
                        log.info("%s-%d: now %s at leader epoch %d", name, p.index, role.value, p.leader_epoch)
                    part.become(p, role)
                self.follow(part)
        if configs_changed:
            self.logs.update_config(name, config)
        if missing:
            await self._make_logs(info, missing, config)
        if gone:
            await self._remove(name, gone)
        if any(self.replicas.partition(name, p.index) is not None for p in info.partitions):
            self.hosted_ids[name] = info.topic_id
        else:
            self.hosted_ids.pop(name, None)

    async def _make_logs(self, info: TopicInfo, parts: list[PartitionInfo], config: LogConfig) -> None:
        try:
            dirs = self.logs.place(len(parts))
            paths = [d / f"{info.name}-{p.index}" for d, p in zip(dirs, parts)]
            if len(paths) <= INLINE_NEW_LOGS:
                logs = open_new_logs(paths, config, info.topic_id)
            else:
                logs = await trio.to_thread.run_sync(open_new_logs, paths, config, info.topic_id)
        except OSError as exc:
            # Not hosted: clients are told NOT_LEADER_OR_FOLLOWER and retry.
            log.error("cannot create the logs of %s here: %s", info.name, exc)
            return
        for p, plog in zip(parts, logs):
            self.logs.adopt((info.name, p.index), plog)
            part = self.replicas.add(info.name, p.index, plog, p)
            part.become(p, self.role(p))
            self.follow(part)
        log.info(
            "hosting %d new partition(s) of %s: %s",
            len(parts),
            info.name,
            ", ".join(f"{p.index} ({self.role(p).value})" for p in parts),
        )

    async def _unhost(self, name: str) -> None:
        """Stop hosting every partition of ``name`` (deleted, or replaced)."""
        indexes = [i for (t, i) in list(self.replicas.partitions) if t == name]
        self.hosted_ids.pop(name, None)
        await self._remove(name, indexes)
        log.info("removed the replicas of topic %s", name)

    async def _remove(self, name: str, indexes: list[int]) -> None:
        """Remove replicas, then close their logs and move them aside a
        chunk at a time; the files go in a worker thread."""
        for i in indexes:
            part = self.replicas.remove(name, i)
            if part is not None and self.fetchers is not None:
                self.fetchers.unfollow(part)
        detached = []
        for n, i in enumerate(indexes, 1):
            path = self.logs.detach(name, i)
            if path is not None:
                detached.append(path)
            if n % DETACH_CHUNK == 0:
                await trio.lowlevel.checkpoint()
        if not detached:
            return
        if self.nursery is None:
            remove_detached(detached)
        else:
            self.nursery.start_soon(trio.to_thread.run_sync, remove_detached, detached)

    # -- after a view is published -----------------------------------------------------

    def settle(self, update: Update) -> None:
        if update.full or OFFSETS_TOPIC in update.changed or any(t.name == OFFSETS_TOPIC for t in update.deleted):
            self.sync_groups()
        if update.full or TXN_TOPIC in update.changed or any(t.name == TXN_TOPIC for t in update.deleted):
            self.sync_txns()

    def sync_groups(self) -> None:
        """Load the offsets topic's partitions this broker now leads, unload
        the ones it no longer does."""
        groups = self.groups
        if groups is None:
            return
        leading = {
            i for (t, i), part in self.replicas.partitions.items() if t == OFFSETS_TOPIC and part.role is Role.LEADER
        }
        for index in sorted(self.leading_offsets - leading):
            groups.unload_partition(index)
            log.info("no longer the group coordinator of %s-%d", OFFSETS_TOPIC, index)
        info = self.metadata.topic(OFFSETS_TOPIC)
        if info is not None and groups.num_partitions != len(info.partitions) and not leading & self.leading_offsets:
            groups.num_partitions = len(info.partitions)  # made elsewhere, with that broker's count
        for index in sorted(leading - self.leading_offsets):
            groups.load_partition(index, now_ms())
            log.info("now the group coordinator of %s-%d", OFFSETS_TOPIC, index)
        self.leading_offsets = leading

    def sync_txns(self) -> None:
        """The same for the transaction coordinator and __transaction_state,
        by leader epoch: the coordinator epoch its markers carry is the
        partition's leader epoch, so a new epoch here (a controlled shutdown
        of a follower bumps it) reloads the partition, as Kafka's
        coordinator is elected again; the transactions it finds prepared
        are finished under the new epoch."""
        txns = self.txns
        if txns is None:
            return
        leading = {
            i: part.info.leader_epoch
            for (t, i), part in self.replicas.partitions.items()
            if t == TXN_TOPIC and part.role is Role.LEADER
        }
        before = self.leading_txn
        for index in sorted(before):
            if leading.get(index) != before[index]:
                txns.unload_partition(index)
                if index not in leading:
                    log.info("no longer the transaction coordinator of %s-%d", TXN_TOPIC, index)
        info = self.metadata.topic(TXN_TOPIC)
        if info is not None and txns.num_partitions != len(info.partitions) and not leading.keys() & before.keys():
            txns.num_partitions = len(info.partitions)
        for index in sorted(leading):
            if before.get(index) != leading[index]:
                txns.load_partition(index, now_ms())
                log.info("now the transaction coordinator of %s-%d (coordinator epoch %d)",
                         TXN_TOPIC, index, leading[index])
        self.leading_txn = leading

    # -- the session ----------------------------------------------------------------

    def session_expired(self) -> None:
        """Drop every leadership at once; the partitions stay, as followers."""
        self.registered = False
        if self.fetchers is not None:
            self.fetchers.unfollow_all()
        dropped = 0
        for part in self.replicas.partitions.values():
            if part.role is Role.LEADER:
                part.become(part.info, Role.FOLLOWER)
                dropped += 1
        if dropped:
            log.warning("dropped the leadership of %d partition(s)", dropped)
        self.sync_groups()
        self.sync_txns()

    def stop_following(self) -> None:
        """A controlled shutdown begins: no partition is followed any more."""
        self.leaving = True
        if self.fetchers is not None:
            self.fetchers.unfollow_all()

    def session_registered(self) -> None:
        """Registered again: the next (full) pass gives back what ZooKeeper says."""
        self.registered = True
