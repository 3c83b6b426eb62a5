"""The group coordinator: Trio glue around the pure group state machines.

One group id names one group, of one type: a classic group
(``classic.py``: JoinGroup/SyncGroup/Heartbeat/LeaveGroup) or a consumer
group (``consumer.py``: KIP-848's ConsumerGroupHeartbeat). As in Kafka, a
request of the other protocol takes over an id only while its group is
empty; otherwise it is refused (we do not convert groups between the two
protocols). ``get`` returns the group whatever its type; both types answer
the classic requests, and the offset rules are dispatched by type.

Classic groups live in memory and are written to their partition of
``__consumer_offsets`` (group metadata and committed offsets, in Kafka's
record formats) so they survive restarts; on start the coordinator reads
those partitions back. Consumer groups are kept in memory only: after a
restart their members are told they are unknown and join again (their
committed offsets are kept). A timer task sleeps until the earliest
deadline of any group (session expiry, join, sync or rebalance timeout)
and then ticks the groups; every operation that may move a deadline wakes
it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

import trio

from protocol.error_codes import ErrorCode

from . import OFFSETS_TOPIC, partition_for
from .classic import DEAD, EMPTY, NO_DEADLINE, ClassicGroup, GroupConfig
from .consumer import ConsumerGroup, ConsumerGroupConfig, HeartbeatResult

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
        )
        self.groups: dict[str, Group] = {}
        self._wake = trio.Event()
        self.num_partitions = self._partition_count()
        from .offsets import OffsetStore

        self.offsets = OffsetStore(self)

    def _partition_count(self) -> int:
        info = self.broker.metadata.topics.get(OFFSETS_TOPIC)
        return len(info.partitions) if info else self.broker.config["offsets.topic.num.partitions"]

    # -- where groups live -----------------------------------------------------------

    def ensure_offsets_topic(self) -> None:
        if OFFSETS_TOPIC not in self.broker.metadata.topics:
            self.broker.create_topic(OFFSETS_TOPIC, self.num_partitions, dict(OFFSETS_TOPIC_CONFIGS))

    def coordinator_for(self, group_id: str):
        """The broker coordinating ``group_id`` (this one, on a single node)."""
        self.ensure_offsets_topic()
        return self.broker.metadata.broker

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
        returned, and refuses classic members."""
        group = self.get(group_id)
        if isinstance(group, ConsumerGroup) and group.is_empty():
            self.remove(group_id)
            group = None
        if group is None:
            group = ClassicGroup(group_id, now_ms() if now is None else now, self.config, self.persist)
            self.groups[group_id] = group
        return group

    def remove(self, group_id: str) -> None:
        group = self.groups.pop(group_id, None)
        if isinstance(group, ConsumerGroup):
            group.dead = True
        elif group is not None:
            group.state = DEAD

    # -- consumer groups (KIP-848) -------------------------------------------------------

    def consumer_group_heartbeat(self, now: int, group_id: str, **request) -> HeartbeatResult:
        """A ConsumerGroupHeartbeat that passed ``consumer.validate_heartbeat``.

        Which group it goes to, as in Kafka: a join (epoch 0) creates the
        group, or replaces an empty classic group; a classic group with
        members is not ours (GROUP_ID_NOT_FOUND). Leaving a group that does
        not exist is GROUP_ID_NOT_FOUND too. A heartbeat (epoch > 0) for a
        group we do not have, or only as an empty classic group, gets
        UNKNOWN_MEMBER_ID so that the member joins again: Kafka answers
        GROUP_ID_NOT_FOUND, which it can afford because it never loses a
        consumer group, while we lose them on restart, and librdkafka treats
        that error as fatal."""
        epoch = request["member_epoch"]
        group = self.get(group_id)
        replaces = None
        if isinstance(group, ClassicGroup):
            if group.state != EMPTY or epoch < 0:
                return HeartbeatResult(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")
            replaces, group = group, None
        if group is None:
            if epoch < 0:
                return HeartbeatResult(ErrorCode.GROUP_ID_NOT_FOUND, f"Consumer group {group_id} not found.")
            if epoch > 0:
                member = request["member_id"]
                return HeartbeatResult(ErrorCode.UNKNOWN_MEMBER_ID, f"Member {member} is not a member of group {group_id}.")
        fresh = group is None
        if fresh:
            group = ConsumerGroup(group_id, self.consumer_config)
        result = group.consumer_group_heartbeat(now, topics=TopicsView(self.broker.metadata), **request)
        if fresh and result.error == ErrorCode.NONE:
            if replaces is not None:
                self.remove(group_id)
                # Its metadata record would bring the classic group back
                # on the next start.
                self.offsets.forget_group_metadata(group_id, now)
            self.groups[group_id] = group
        self.poke()
        return result

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

    __slots__ = ("_topics",)

    def __init__(self, metadata):
        self._topics = metadata.topics

    def __getitem__(self, name: str) -> tuple[uuid.UUID, int]:
        info = self._topics[name]
        return info.topic_id, len(info.partitions)

    def __iter__(self):
        return iter(self._topics)

    def __len__(self) -> int:
        return len(self._topics)

