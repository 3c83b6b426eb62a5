"""Run-time state of one partition this broker hosts.

Single-node: the high watermark follows the log end as soon as an append
is done (the in-sync replica set is this broker alone). Fetch long-polls
park an event here and are woken by the next append.

A partition whose log directory has failed is offline (Kafka's
HostedPartition.Offline): every operation on its log raises
KafkaStorageError, which handlers answer as KAFKA_STORAGE_ERROR, and
Metadata reports it without a leader.
"""

from __future__ import annotations

import trio

from pybroker.protocol.record_batch import RecordBatch
from pybroker.storage.log import AppendResult, PartitionLog

from .cluster.model import PartitionInfo


class Partition:
    __slots__ = ("topic", "index", "log", "info", "_waiters")

    def __init__(self, topic: str, index: int, log: PartitionLog, info: PartitionInfo):
        self.topic = topic
        self.index = index
        self.log = log
        self.info = info
        self._waiters: set[trio.Event] = set()
        # This node is the only in-sync replica, so everything in the log is
        # committed: the checkpointed high watermark may be stale after a
        # crash (it is written periodically), the log end is not.
        log.set_high_watermark(log.log_end_offset)

    @property
    def leader_epoch(self) -> int:
        return self.info.leader_epoch

    @property
    def high_watermark(self) -> int:
        return self.log.high_watermark

    @property
    def offline(self) -> bool:
        return self.log.offline is not None

    def check_online(self) -> None:
        """Raise KafkaStorageError if the partition's log directory has failed."""
        self.log.check_online()

    def append(self, records, now: int, validated: bool = False) -> AppendResult:
        """Append client batches; ``validated`` when the caller has already
        checked their CRCs (the produce path does, once per batch)."""
        result = self.log.append(records, leader_epoch=self.info.leader_epoch, now=now, validate=not validated)
        self._appended()
        return result

    def append_batches(self, batches: list[RecordBatch], now: int) -> AppendResult:
        """Append batches the produce path has already split and checked."""
        result = self.log.append_batches(batches, leader_epoch=self.info.leader_epoch, now=now)
        self._appended()
        return result

    def _appended(self) -> None:
        self.log.set_high_watermark(self.log.log_end_offset)
        self.wake()

    def park(self, event: trio.Event) -> None:
        self._waiters.add(event)

    def unpark(self, event: trio.Event) -> None:
        self._waiters.discard(event)

    def wake(self) -> None:
        if self._waiters:
            for event in self._waiters:
                event.set()
            self._waiters.clear()
