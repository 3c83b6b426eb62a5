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
``consumer_log.py`` after every operation that changed them), and ``load``
rebuilds them on start, so members carry on through a broker restart with
their member ids, epochs and assignments. A timer task sleeps until the
earliest deadline of any group (session expiry, join, sync or rebalance
timeout) and then ticks the groups; every operation that may move a
deadline wakes it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import EncodeError

from . import OFFSETS_TOPIC, parse_migration_policy, partition_for
from .classic import DEAD, EMPTY, NO_DEADLINE, ClassicGroup, GroupConfig, JoinResult, SyncResult
from .consumer import JOIN_EPOCH, ConsumerGroup, ConsumerGroupConfig, HeartbeatResult

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger("pybroker.groups")

Group = ClassicGroup | ConsumerGroup

OFFSETS_TOPIC_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": str(100 * 1024 * 1024), "compression.type": "producer"}


def now_ms() -> int:
    return int(time.time() * 1000)


class Waiter:
    """Receives one result from a state-machine callback, maybe before the
    handler starts waiting for it."""

    __slots__ = ("event", "result")

    def __init__(self):
        self.event = trio.Event()
        self.result = None

    def __call__(self, result) -> None:
        self.result = result
        self.event.set()

    async def wait(self):
        await self.event.wait()
        return self.result


class GroupCoordinator:
    def __init__(self, broker: Broker):
        self.broker = broker
        cfg = broker.config
        self.config = GroupConfig(
            min_session_timeout_ms=cfg["group.min.session.timeout.ms"],
            max_session_timeout_ms=cfg["group.max.session.timeout.ms"],
            initial_rebalance_delay_ms=cfg["group.initial.rebalance.delay.ms"],
            max_size=cfg["group.max.size"],
        )
        self.consumer_config = ConsumerGroupConfig(
            session_timeout_ms=cfg["group.consumer.session.timeout.ms"],
            heartbeat_interval_ms=cfg["group.consumer.heartbeat.interval.ms"],
            max_size=cfg["group.consumer.max.size"],
            migration_policy=parse_migration_policy(cfg["group.consumer.migration.policy"]),
            classic_max_size=cfg["group.max.size"],
        )
        self.groups: dict[str, Group] = {}
        self._wake = trio.Event()
        self.num_partitions = self._partition_count()
        from .consumer_log import ConsumerGroupLog
        from .offsets import OffsetStore

        self.offsets = OffsetStore(self)
        self.consumer_log = ConsumerGroupLog(self.offsets)

    def load(self, now: int) -> None:
        """Rebuild the groups from __consumer_offsets (at start)."""
        from .offsets import restore_group

        found = self.offsets.load()
        for group_id, value in found.classic.items():
            self.groups[group_id] = restore_group(self, group_id, value, now)
        for group_id, records in found.consumer.items():
            group = self.consumer_log.restore(group_id, records, now, self.consumer_config)
            if group is not None:
                self.groups[group_id] = self._adopt(group)
                log.info("loaded consumer group %r with %d members", group_id, len(group.members))

    def _partition_count(self) -> int:
        info = self.broker.metadata.topic(OFFSETS_TOPIC)
        return len(info.partitions) if info else self.broker.config["offsets.topic.num.partitions"]

    # -- where groups live -----------------------------------------------------------

    def ensure_offsets_topic(self) -> None:
        if self.broker.metadata.topic(OFFSETS_TOPIC) is None:
            self.broker.create_topic(OFFSETS_TOPIC, self.num_partitions, dict(OFFSETS_TOPIC_CONFIGS))

    def coordinator_for(self, group_id: str):
        """The broker coordinating ``group_id`` (this one, on a single node)."""
        self.ensure_offsets_topic()
        return self.broker.metadata.broker(self.broker.node_id)

    def partition_of(self, group_id: str):
        self.ensure_offsets_topic()
        return self.broker.partition(OFFSETS_TOPIC, partition_for(group_id, self.num_partitions))

    def get(self, group_id: str) -> Group | None:
        """The live group of that id, classic or consumer."""
        group = self.groups.get(group_id)
        return None if group is None or group.state == DEAD else group

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

    def remove(self, group_id: str) -> None:
        """The group is gone (deleted, expired, replaced by an empty group of
        the other kind); a consumer group's records get their tombstones."""
        group = self.groups.pop(group_id, None)
        if isinstance(group, ConsumerGroup):
            group.dead = True
            self.consumer_log.forget(group_id, now_ms())
        elif group is not None:
            group.state = DEAD

    def _adopt(self, group: ConsumerGroup) -> ConsumerGroup:
        group.downgrade = self._downgrade
        return group

    def _write(self, group: ConsumerGroup, now: int, leading: list | None = None) -> ErrorCode:
        """Write what changed in a consumer group; the error a request that
        changed it gets if that failed (as Kafka maps append errors)."""
        if group.replaced or group.dead:
            return ErrorCode.NONE
        from .offsets import GROUP_ERRORS

        error = self.consumer_log.write(group, now, leading)
        return GROUP_ERRORS.get(error, error)

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
        to a failed write, or downgraded after the member was fenced)."""
        from .migration import to_consumer_group, upgrade_refusal
        from .offsets import group_tombstone, has_metadata

        epoch = request["member_epoch"]
        group = self.get(group_id)
        topics = TopicsView(self.broker.metadata)
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
        error = self._write(group, now, leading)
        if error != ErrorCode.NONE:
            return HeartbeatResult(error)
        if not installed:
            if before is not None:
                before.release_waiters(ErrorCode.REBALANCE_IN_PROGRESS)
                before.state = DEAD
                if not before.is_empty():
                    log.info("[GroupId %s] Converted the classic group to a consumer group.", group_id)
            self.groups[group_id] = self._adopt(group)
        self.poke()
        return result

    def _downgrade(self, group: ConsumerGroup, now: int, leaving: set[str], rebalance: bool) -> bool:
        """A consumer group's request to become a classic group without
        ``leaving``: swap the groups once the conversion batch is written
        (consumer group tombstones, classic group metadata) and, if asked,
        start the rebalance in which the members join the classic way."""
        from .migration import to_classic_group
        from .offsets import group_record

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
        if self.consumer_log.forget(group.group_id, now, [record]) != ErrorCode.NONE:
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
            result = group.join(now, topics=TopicsView(self.broker.metadata), **request)
            if result.error == ErrorCode.NONE:
                error = self._write(group, now)
                if error != ErrorCode.NONE:
                    result = JoinResult(error, request["member_id"])
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

    def leave(self, group: Group, now: int, leaving: list[tuple[str, str | None]]) -> list[tuple[str, str | None, ErrorCode]]:
        """A LeaveGroup: (member id, instance id, error) per member named."""
        if isinstance(group, ConsumerGroup):
            results = group.leave_members(now, leaving)
            self._write(group, now)
        else:
            results = [(m, i, group.leave(now, m, i)) for m, i in leaving]
        self.poke()
        return results

    def persist(self, group: ClassicGroup) -> int:
        """Write the group's metadata; returns an error code (0 on success)."""
        return self.offsets.write_group(group)

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
        retention_every = self.broker.config["offsets.retention.check.interval.ms"] / 1000
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
    """The cluster's topics as the consumer groups see them: name ->
    (topic id, partition count), read live from the broker's metadata."""

    __slots__ = ("_metadata",)

    def __init__(self, metadata):
        self._metadata = metadata

    def __getitem__(self, name: str) -> tuple[uuid.UUID, int]:
        info = self._metadata.topic(name)
        if info is None:
            raise KeyError(name)
        return info.topic_id, len(info.partitions)

    def __iter__(self):
        return iter([t.name for t in self._metadata.all_topics()])

    def __len__(self) -> int:
        return len(self._metadata.all_topics())

