"""The group coordinator: Trio glue around the pure group state machines.

One group id names one group, of one type: a classic group
(``classic.py``: JoinGroup/SyncGroup/Heartbeat/LeaveGroup) or a KIP-848
consumer group (``consumer.py``: ConsumerGroupHeartbeat; it also serves
the classic requests of members that still use the classic protocol,
``consumer_classic.py``). ``get`` returns the group whatever its type;
the classic requests go through ``join``/``sync``/``heartbeat``/``leave``
here, which hand consumer groups the cluster's topics and write what
changed; the offset rules are dispatched by type.

A request of the other protocol takes over an empty group. Groups with
members are converted online as Kafka 4 does, as
group.consumer.migration.policy allows (``migration.py``): a
ConsumerGroupHeartbeat joining a classic group upgrades it; a consumer
group whose last consumer-protocol member goes, leaving only classic
members, asks through its ``downgrade`` hook to become a classic group
again. Either conversion is written as one batch (the old kind's
tombstones and the new kind's records) and takes effect only once that
batch is in the log.

Both kinds of group are written to their partition of
``__consumer_offsets`` in Kafka's record formats (classic groups by
``offsets.py`` when a generation completes; consumer groups by
``consumer_log.py`` after every operation that changed them) through the
replica layer's "append and complete when committed" (``replicas.py``,
``writes.py``): a request whose write is in flight is answered once it is
committed, with Kafka's mapped error if it failed, and the state machines
check, when it completes, whether the group is still where it was.

``load`` rebuilds the groups on start, so members carry on through a
broker restart with their member ids, epochs and assignments. Each
partition of the offsets topic is loading, active, or not ours: requests
for a group whose partition is loading answer COORDINATOR_LOAD_IN_PROGRESS,
for one whose partition this broker does not lead NOT_COORDINATOR
(``status``). On a single node every partition is loaded before the
listeners serve. In cluster mode (``cluster=True``) the broker calls
``load_partition``/``unload_partition`` as it gains and loses the
leadership of each partition, the coordinator of a group is the broker
leading its partition (none while it has no leader), and before the
offsets topic exists no group is ours (NOT_COORDINATOR, as Kafka). A timer task sleeps until the
earliest deadline of any group (session expiry, join, sync or rebalance
timeout) and then ticks the groups; every operation that may move a
deadline wakes it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import EncodeError, KafkaError

from . import OFFSETS_TOPIC, now_ms, parse_migration_policy, partition_for
from .classic import DEAD, EMPTY, NO_DEADLINE, ClassicGroup, GroupConfig, JoinResult, Stored, SyncResult
from .consumer import JOIN_EPOCH, ConsumerGroup, ConsumerGroupConfig, HeartbeatResult
from .consumer_log import ConsumerGroupLog
from .migration import to_classic_group, to_consumer_group, upgrade_refusal
from .offsets import GROUP_ERRORS, Loaded, OffsetStore, group_record, group_tombstone, has_metadata, restore_group
from .replicas import Replicas
from .writes import Completion, GroupWriter

__all__ = ["GroupCoordinator", "TopicsView", "Waiter", "now_ms"]

log = logging.getLogger("pybroker.groups")

Group = ClassicGroup | ConsumerGroup
Waiter = Completion  # what a handler waits on for a JoinGroup or SyncGroup result

OFFSETS_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": str(100 * 1024 * 1024), "compression.type": "producer"}

# States of a partition of the offsets topic on this broker (absent: not ours).
LOADING = "loading"
ACTIVE = "active"


class GroupCoordinator:
    """The groups of the partitions of __consumer_offsets this broker leads.

    It takes what it uses: ``config`` (BrokerConfig), ``replicas`` (append
    and complete when committed; ``partition(topic, index)`` to read its
    partitions when loading them), ``metadata`` (read only: ``topics``, a
    mapping of name to a topic with ``topic_id`` and ``partitions``,
    ``topic_by_id`` and ``broker``, this node) and ``create_topic`` (makes
    the offsets topic on first use, as Kafka does)."""

    def __init__(
        self, config, replicas: Replicas, metadata, create_topic: Callable[[str, int, dict], Any], cluster: bool = False
    ):
        self.cluster_config = config
        self.cluster = cluster
        self.replicas = replicas
        self.metadata = metadata
        self.create_topic = create_topic
        self.config = GroupConfig(
            min_session_timeout_ms=config["group.min.session.timeout.ms"],
            max_session_timeout_ms=config["group.max.session.timeout.ms"],
            initial_rebalance_delay_ms=config["group.initial.rebalance.delay.ms"],
            max_size=config["group.max.size"],
        )
        self.consumer_config = ConsumerGroupConfig(
            session_timeout_ms=config["group.consumer.session.timeout.ms"],
            heartbeat_interval_ms=config["group.consumer.heartbeat.interval.ms"],
            max_size=config["group.consumer.max.size"],
            migration_policy=parse_migration_policy(config["group.consumer.migration.policy"]),
            classic_max_size=config["group.max.size"],
        )
        self.groups: dict[str, Group] = {}
        self.partitions: dict[int, str] = {}  # partition of the offsets topic -> LOADING / ACTIVE
        self.resigned: set[int] = set()  # partitions unloaded: no longer ours
        self._wake = trio.Event()
        self.topics = TopicsView(metadata)
        info = metadata.topic(OFFSETS_TOPIC)
        self.num_partitions = len(info.partitions) if info else config["offsets.topic.num.partitions"]
        self.writer = GroupWriter(replicas, self._writable_partition, config["offsets.commit.timeout.ms"])
        self.offsets = OffsetStore(self.writer, self, config)
        self.consumer_log = ConsumerGroupLog(self.offsets)
        # Classic groups' generations completed here (the metrics' counter).
        self.rebalances = 0

    # -- loading --------------------------------------------------------------------

    def load(self, now: int) -> Loaded:
        """Load every partition of __consumer_offsets (at start); what was found."""
        found = Loaded()
        info = self.metadata.topic(OFFSETS_TOPIC)
        for p in info.partitions if info is not None else ():
            part_found = self.load_partition(p.index, now)
            found.classic.update(part_found.classic)
            found.consumer.update(part_found.consumer)
            found.latest.update(part_found.latest)
        return found

    def load_partition(self, index: int, now: int) -> Loaded:
        """Rebuild the groups of one partition of the offsets topic, which
        is loading meanwhile; then serve them."""
        self.partitions[index] = LOADING
        self.resigned.discard(index)
        part = self.replicas.partition(OFFSETS_TOPIC, index)
        found = self.offsets.load([part] if part is not None else [])
        for group_id, value in found.classic.items():
            self.groups[group_id] = restore_group(self.config, self.persist, group_id, value, now)
        for group_id, records in found.consumer.items():
            group = self.consumer_log.restore(group_id, records, now, self.consumer_config)
            if group is not None:
                self.groups[group_id] = self._adopt(group)
                log.info("loaded consumer group %r with %d members", group_id, len(group.members))
        self.partitions[index] = ACTIVE
        return found

    def unload_partition(self, index: int) -> None:
        """This broker no longer leads the partition: drop its groups from
        memory (their records stay), answering waiting members NOT_COORDINATOR."""
        self.partitions.pop(index, None)
        self.resigned.add(index)
        gone = [gid for gid in self.groups if self.partition_index(gid) == index]
        for group_id in gone:
            group = self.groups.pop(group_id)
            if isinstance(group, ClassicGroup):
                group.release_waiters(ErrorCode.NOT_COORDINATOR)
                group.state = DEAD
            else:
                group.dead = True
            self.consumer_log.written.pop(group_id, None)
        self.offsets.forget([gid for gid in self.offsets.offsets if self.partition_index(gid) == index])

    def status(self, group_id: str) -> ErrorCode:
        """Whether this broker serves ``group_id`` now: NONE,
        COORDINATOR_LOAD_IN_PROGRESS or NOT_COORDINATOR. Before the
        offsets topic exists every group is ours (it is made on first use)."""
        if self.metadata.topic(OFFSETS_TOPIC) is None:
            return ErrorCode.NOT_COORDINATOR if self.cluster else ErrorCode.NONE
        index = self.partition_index(group_id)
        state = self.partitions.get(index)
        if (
            state is None
            and not self.cluster
            and index not in self.resigned
            and self.replicas.partition(OFFSETS_TOPIC, index) is not None
        ):
            # Made by someone else since we loaded (an admin's CreateTopics):
            # on a single node it is ours, and new.
            self.load_partition(index, now_ms())
            state = ACTIVE
        if state == ACTIVE:
            return ErrorCode.NONE
        return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS if state == LOADING else ErrorCode.NOT_COORDINATOR

    @property
    def loading(self) -> bool:
        """Whether a partition of the offsets topic is being loaded."""
        return LOADING in self.partitions.values()

    # -- where groups live -----------------------------------------------------------

    def ensure_offsets_topic(self) -> None:
        if self.metadata.topic(OFFSETS_TOPIC) is None:
            self.create_topic(OFFSETS_TOPIC, self.num_partitions, dict(OFFSETS_TOPIC_CONFIGS))
            if not self.cluster:  # in cluster mode it comes through the metadata, and leadership
                for index in range(self.num_partitions):
                    self.partitions[index] = ACTIVE  # new and empty: nothing to load

    def coordinator_for(self, group_id: str):
        """The broker coordinating ``group_id``: this one on a single node;
        in cluster mode the leader of its partition, None while there is
        none (the offsets topic being created, say)."""
        self.ensure_offsets_topic()
        if not self.cluster:
            return self.metadata.this_broker
        info = self.metadata.topic(OFFSETS_TOPIC)
        if info is None:
            return None
        leader = info.partitions[partition_for(group_id, len(info.partitions))].leader
        return self.metadata.broker(leader) if leader >= 0 else None

    def partition_index(self, group_id: str) -> int:
        return partition_for(group_id, self.num_partitions)

    def partition_of(self, group_id: str):
        self.ensure_offsets_topic()
        return self.replicas.partition(OFFSETS_TOPIC, self.partition_index(group_id))

    def _writable_partition(self, group_id: str) -> int:
        try:
            self.ensure_offsets_topic()
        except Exception as exc:
            log.exception("cannot create %s for group %r", OFFSETS_TOPIC, group_id)
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, str(exc)) from None
        return self.partition_index(group_id)

    def get(self, group_id: str) -> Group | None:
        """The live group of that id, classic or consumer."""
        group = self.groups.get(group_id)
        return None if group is None or group.state == DEAD else group

    def ids(self) -> list[str]:
        return list(self.groups)

    def get_or_create(self, group_id: str, now: int | None = None) -> Group:
        """The group for a classic JoinGroup or a first offset commit: the
        existing one, or a new classic group. An empty consumer group gives
        way to it (Kafka deletes it); a consumer group with members is
        returned, and serves classic members."""
        group = self.get(group_id)
        if isinstance(group, ConsumerGroup) and group.is_empty():
            self.remove(group_id)
            group = None
        if group is None:
            group = ClassicGroup(group_id, now_ms() if now is None else now, self.config, self.persist)
            self.groups[group_id] = group
        return group

    def remove(self, group_id: str) -> Completion | None:
        """The group is gone (deleted, expired, replaced by an empty group of
        the other kind); a consumer group's records get their tombstones
        (the write returned)."""
        group = self.groups.pop(group_id, None)
        if isinstance(group, ConsumerGroup):
            group.dead = True
            return self.consumer_log.forget(group_id, now_ms())
        if group is not None:
            group.state = DEAD
        return None

    def _adopt(self, group: ConsumerGroup) -> ConsumerGroup:
        group.downgrade = self._downgrade
        return group

    def _write(self, group: ConsumerGroup, now: int, leading: list | None = None) -> Completion:
        """Write what changed in a consumer group. The completion's result
        is the error a request that changed it gets (as Kafka maps append
        errors), once committed; it is already set if the append failed."""
        mapped = Completion()
        if group.replaced or group.dead:
            mapped(ErrorCode.NONE)
            return mapped
        self.consumer_log.write(group, now, leading).then(lambda error: mapped(GROUP_ERRORS.get(error, error)))
        return mapped

    # -- consumer groups (KIP-848) -------------------------------------------------------

    def consumer_group_heartbeat(self, now: int, group_id: str, **request) -> HeartbeatResult:
        """A ConsumerGroupHeartbeat that passed ``consumer.validate_heartbeat``.

        Which group it goes to, as in Kafka: a join (epoch 0) creates the
        group, replaces an empty classic group, or converts a classic group
        with members (``migration.py``; GROUP_ID_NOT_FOUND with Kafka's
        message when that is not allowed or possible). Leaving a group that
        does not exist, or is classic, is GROUP_ID_NOT_FOUND too. A
        heartbeat (epoch > 0) for a group we do not have, or that is
        classic, gets UNKNOWN_MEMBER_ID so that the member joins again:
        Kafka answers GROUP_ID_NOT_FOUND, which librdkafka treats as fatal,
        while the member may well belong here after a join (a group lost
        to a failed write, or downgraded after the member was fenced).

        The result's ``written`` is the write of what changed, still in
        flight: the response waits for it (and answers its error). A new or
        converted group takes its place once its records are appended."""
        epoch = request["member_epoch"]
        group = self.get(group_id)
        topics = self.topics
        before = None  # the classic group this one replaces
        if isinstance(group, ClassicGroup):
            if epoch > JOIN_EPOCH:
                member = request["member_id"]
                return HeartbeatResult(ErrorCode.UNKNOWN_MEMBER_ID, f"Member {member} is not a member of group {group_id}.")
            if epoch < JOIN_EPOCH:
                return HeartbeatResult(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")
            if group.state == EMPTY:
                before, group = group, None
            else:
                refusal = upgrade_refusal(group, self.consumer_config)
                converted = refusal or to_consumer_group(group, now, topics, self.consumer_config)
                if isinstance(converted, str):
                    log.info("%s", converted)
                    return HeartbeatResult(ErrorCode.GROUP_ID_NOT_FOUND, converted)
                before, group = group, converted
        if group is None:
            if epoch < 0:
                return HeartbeatResult(ErrorCode.GROUP_ID_NOT_FOUND, f"Consumer group {group_id} not found.")
            if epoch > 0:
                member = request["member_id"]
                return HeartbeatResult(ErrorCode.UNKNOWN_MEMBER_ID, f"Member {member} is not a member of group {group_id}.")
            group = ConsumerGroup(group_id, self.consumer_config)
        installed = self.groups.get(group_id) is group
        result = group.consumer_group_heartbeat(now, topics=topics, **request)
        if result.error != ErrorCode.NONE:
            return result
        # A classic group with a generation leaves a metadata record that
        # would bring it back on the next start: its tombstone goes first.
        leading = [group_tombstone(group_id)] if before is not None and has_metadata(before) else None
        written = self._write(group, now, leading)
        if written.done and written.result != ErrorCode.NONE:
            return HeartbeatResult(written.result)
        if not installed:
            if before is not None:
                before.release_waiters(ErrorCode.REBALANCE_IN_PROGRESS)
                before.state = DEAD
                if not before.is_empty():
                    log.info("[GroupId %s] Converted the classic group to a consumer group.", group_id)
            self.groups[group_id] = self._adopt(group)
        self.poke()
        if not written.done:
            result.written = written
        return result

    def _downgrade(self, group: ConsumerGroup, now: int, leaving: set[str], rebalance: bool) -> bool:
        """A consumer group's request to become a classic group without
        ``leaving``: swap the groups once the conversion batch (consumer
        group tombstones, classic group metadata) is appended and, if
        asked, start the rebalance in which the members join the classic way."""
        if self.groups.get(group.group_id) is not group:
            return False
        classic = to_classic_group(group, leaving, now, self.config, self.persist)
        if classic is None:
            return False
        try:
            record = group_record(classic)
        except EncodeError as exc:
            log.warning("cannot encode metadata of group %r: %s", group.group_id, exc)
            return False
        done = self.consumer_log.forget(group.group_id, now, [record])
        if done.done and done.result != ErrorCode.NONE:
            return False
        self.groups[group.group_id] = classic
        if rebalance:
            classic.rebalance(now)
        log.info("[GroupId %s] Converted the consumer group to a classic group.", group.group_id)
        self.poke()
        return True

    # -- the classic requests, to a group of either kind ---------------------------------

    def join(self, group: Group, now: int, **request) -> JoinResult | None:
        """A JoinGroup; None when the request's callback gets the answer."""
        if isinstance(group, ConsumerGroup):
            result = group.join(now, topics=self.topics, **request)
            if result.error == ErrorCode.NONE:
                written = self._write(group, now)
                if not written.done:
                    callback, member_id, done = request["callback"], request["member_id"], result
                    written.then(lambda error: callback(JoinResult(error, member_id) if error else done))
                    result = None
                elif written.result != ErrorCode.NONE:
                    result = JoinResult(written.result, request["member_id"])
        else:
            result = group.join(now, **request)
        self.poke()
        return result

    def sync(self, group: Group, now: int, **request) -> SyncResult | None:
        result = group.sync(now, **request)
        self.poke()
        return result

    def heartbeat(self, group: Group, now: int, member_id: str, instance_id: str | None, generation: int) -> ErrorCode:
        error = group.heartbeat(now, member_id, instance_id, generation)
        self.poke()
        return error

    def leave(
        self, group: Group, now: int, leaving: list[tuple[str, str | None]]
    ) -> tuple[list[tuple[str, str | None, ErrorCode]], Completion | None]:
        """A LeaveGroup: (member id, instance id, error) per member named,
        and the write the response waits for (a consumer group's), if any."""
        written = None
        if isinstance(group, ConsumerGroup):
            results = group.leave_members(now, leaving)
            written = self._write(group, now)
        else:
            results = [(m, i, group.leave(now, m, i)) for m, i in leaving]
        self.poke()
        return results, written

    def persist(self, group: ClassicGroup, assignment: dict[str, bytes] | None, stored: Stored) -> None:
        """Write a classic group's metadata; ``stored(error, now)`` once
        committed or failed (``classic.py``). An assignment (empty for a
        group left without members) is written once per generation: a
        completed rebalance; None is a static member's replacement."""
        if assignment is not None:
            self.rebalances += 1
        self.offsets.write_group(group, now_ms(), assignment, stored)

    # -- timers ------------------------------------------------------------------------

    def poke(self) -> None:
        """A deadline may have moved: let the timer task look again."""
        self._wake.set()

    def tick(self, now: int | None = None) -> None:
        now = now_ms() if now is None else now
        for group in list(self.groups.values()):
            if group.next_deadline() <= now:
                group.tick(now)
                if isinstance(group, ConsumerGroup):
                    self._write(group, now)

    async def run(self) -> None:
        """The timers, and the task that completes the writes."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.writer.run)
            await self._run_timers()

    async def _run_timers(self) -> None:
        retention_every = self.cluster_config["offsets.retention.check.interval.ms"] / 1000
        next_retention = trio.current_time() + retention_every
        while True:
            nearest = min((g.next_deadline() for g in self.groups.values()), default=NO_DEADLINE)
            wait = (nearest - now_ms()) / 1000 if nearest != NO_DEADLINE else retention_every
            wait = max(0.0, min(wait, next_retention - trio.current_time()))
            self._wake = trio.Event()
            with trio.move_on_after(wait):
                await self._wake.wait()
            self.tick()
            if trio.current_time() >= next_retention:
                next_retention = trio.current_time() + retention_every
                self.offsets.expire(now_ms())

    # -- offsets -----------------------------------------------------------------------
    def validate_offset_commit(
        self, group_id: str, generation: int, member_id: str, instance_id: str | None, api_version: int | None = None
    ) -> ErrorCode:
        """Kafka's rules for who may commit to a group (KAFKA-14201 included):
        a missing group accepts generation -1 commits (and is created as a
        simple group), otherwise ILLEGAL_GENERATION, or from OffsetCommit v9
        GROUP_ID_NOT_FOUND. A consumer group checks member epochs instead of
        generations (``generation`` is OffsetCommit v9's member epoch):
        STALE_MEMBER_EPOCH, UNKNOWN_MEMBER_ID, and UNSUPPORTED_VERSION for a
        member committing below v9. ``api_version`` None skips the
        version-dependent rules."""
        now = now_ms()
        group = self.get(group_id)
        if group is None:
            if generation >= 0:
                return ErrorCode.GROUP_ID_NOT_FOUND if (api_version or 0) >= 9 else ErrorCode.ILLEGAL_GENERATION
            self.get_or_create(group_id, now)
            return ErrorCode.NONE
        if isinstance(group, ConsumerGroup):
            return group.validate_offset_commit(now, member_id, instance_id, generation, api_version)
        error = group.validate_offset_commit(now, member_id, instance_id, generation)
        self.poke()
        return error

    def complete_txn(self, producer_id: int, commit: bool, index: int) -> None:
        """A transaction marker was committed in partition ``index`` of the offsets topic."""
        ended = {g for g in self.offsets.txn_offsets.get(producer_id, ()) if self.partition_index(g) == index}
        self.offsets.complete_txn(producer_id, commit, lambda group_id: group_id in ended)
        for group_id in ended:
            if commit and self.offsets.has_offsets(group_id) and self.get(group_id) is None:
                self.get_or_create(group_id)  # its offsets came with the commit: a simple group, as in Kafka

    def validate_offset_fetch(self, group_id: str, member_id: str | None, member_epoch: int) -> ErrorCode:
        """OffsetFetch v9+ member checks: only consumer groups have them."""
        group = self.get(group_id)
        if isinstance(group, ConsumerGroup):
            return group.validate_offset_fetch(member_id, member_epoch)
        return ErrorCode.NONE

    def group_state(self, group_id: str) -> str:
        group = self.get(group_id)
        return group.state if group else DEAD

    def is_empty(self, group_id: str) -> bool:
        group = self.get(group_id)
        return group is None or group.state == EMPTY


class TopicsView(Mapping):
    """The cluster's topics as the groups see them: name -> (topic id,
    partition count), read live from the metadata (all the groups read of it)."""

    __slots__ = ("_metadata",)

    def __init__(self, metadata):
        self._metadata = metadata

    def has_partition(self, name: str, index: int) -> bool:
        info = self._metadata.topic(name)
        return info is not None and 0 <= index < len(info.partitions)

    def name_of(self, topic_id: uuid.UUID) -> str | None:
        info = self._metadata.topic_by_id(topic_id)
        return None if info is None else info.name

    def __getitem__(self, name: str) -> tuple[uuid.UUID, int]:
        info = self._metadata.topic(name)
        if info is None:
            raise KeyError(name)
        return info.topic_id, len(info.partitions)

    def __iter__(self):
        return iter([t.name for t in self._metadata.all_topics()])

    def __len__(self) -> int:
        return len(self._metadata.all_topics())

