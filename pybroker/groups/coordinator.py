"""The group coordinator: Trio glue around the pure group state machines.

Groups live in memory and are written to their partition of
``__consumer_offsets`` (group metadata and committed offsets, in Kafka's
record formats) so they survive restarts; on start the coordinator reads
those partitions back. A timer task sleeps until the earliest deadline of
any group (session expiry, join or sync timeout) and then ticks the groups;
every operation that may move a deadline wakes it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import trio

from protocol.error_codes import ErrorCode

from . import OFFSETS_TOPIC, partition_for
from .classic import DEAD, EMPTY, NO_DEADLINE, ClassicGroup, GroupConfig

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger("pybroker.groups")

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
        )
        self.groups: dict[str, ClassicGroup] = {}
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

    def get(self, group_id: str) -> ClassicGroup | None:
        group = self.groups.get(group_id)
        return None if group is None or group.state == DEAD else group

    def get_or_create(self, group_id: str, now: int | None = None) -> ClassicGroup:
        group = self.get(group_id)
        if group is None:
            group = ClassicGroup(group_id, now_ms() if now is None else now, self.config, self.persist)
            self.groups[group_id] = group
        return group

    def remove(self, group_id: str) -> None:
        group = self.groups.pop(group_id, None)
        if group is not None:
            group.state = DEAD

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

    def validate_offset_commit(self, group_id: str, generation: int, member_id: str, instance_id: str | None) -> ErrorCode:
        """Kafka's rules for who may commit to a group (KAFKA-14201 included):
        a missing group accepts generation -1 commits (and is created as a
        simple group), otherwise ILLEGAL_GENERATION."""
        now = now_ms()
        group = self.get(group_id)
        if group is None:
            if generation >= 0:
                return ErrorCode.ILLEGAL_GENERATION
            self.get_or_create(group_id, now)
            return ErrorCode.NONE
        error = group.validate_offset_commit(now, member_id, instance_id, generation)
        self.poke()
        return error

    def group_state(self, group_id: str) -> str:
        group = self.get(group_id)
        return group.state if group else DEAD

    def is_empty(self, group_id: str) -> bool:
        group = self.get(group_id)
        return group is None or group.state == EMPTY
