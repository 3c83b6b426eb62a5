"""One partition replica this broker hosts, over its log.

The replica's role, its leader epoch and in-sync replica set, the high
watermark and last stable offset, the checks of a request's leader epoch,
reads for Fetch, appends, offsets by timestamp, DeleteRecords, end offsets
of epochs, and the long-poll waiters that an append wakes.

The role and leader epoch come from the partition's state (on a single
node this broker leads everything; in cluster mode the state znode names
the leader). A follower answers clients as Kafka's does
(``Partition.localLogWithEpochOrThrow``): the request's leader epoch is
checked first, then leadership, NOT_LEADER_OR_FOLLOWER. Followers copy
nothing yet (replication is the next step), so a leader's own ISR for
its high watermark is itself alone, whatever ISR the state reports.

The high watermark is the smallest log end offset over the ISR, never
moving back; with this node alone in the ISR it is the log end as soon
as an append is done. The last stable offset equals it until there are
transactions.

A partition whose log directory has failed is offline (Kafka's
HostedPartition.Offline): storage refuses every operation with
KafkaStorageError, which this layer turns into KafkaError
KAFKA_STORAGE_ERROR for the handlers; Metadata reports it without a
leader.
"""

from __future__ import annotations

import enum
import os
from typing import NamedTuple

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.record_batch import RecordBatch
from pybroker.storage.log import AppendResult, KafkaStorageError, OffsetOutOfRangeError, PartitionLog
from pybroker.storage.producer_state import ProducerStateError

from ..cluster.model import PartitionInfo

UNDEFINED = -1
LATEST, EARLIEST, MAX_TIMESTAMP = -1, -2, -3
DEBUG_REPLICA = -2
READ_COMMITTED = 1


class Role(enum.Enum):
    LEADER = "leader"
    FOLLOWER = "follower"


class FetchRead(NamedTuple):
    """What Fetch answers for a partition: whole batches (bytes, a view, or
    a FileRegion for sendfile) and the offsets; ``error`` is a per-partition
    error that still comes with the offsets (a fenced epoch, an offset out
    of range)."""

    records: object
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    error: ErrorCode = ErrorCode.NONE


# Makes a FetchRead without the Python frame of a named tuple's __new__.
_fetch_read = tuple.__new__


def storage_error(exc: KafkaStorageError) -> KafkaError:
    return KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, str(exc))


class Partition:
    __slots__ = ("_replica_leos", "_waiters", "index", "info", "isr", "log", "node_id", "role", "topic")

    def __init__(self, topic: str, index: int, log: PartitionLog, info: PartitionInfo, node_id: int = 0, isr=None):
        self.topic = topic
        self.index = index
        self.log = log
        self.info = info
        self.node_id = node_id
        self.role = Role.LEADER
        # This node alone until replication: the other replicas' log end
        # offsets arrive with their fetches.
        self.isr: frozenset[int] = frozenset(isr) if isr is not None else frozenset((node_id,))
        self._replica_leos: dict[int, int] = {}
        self._waiters: set[trio.Event] = set()
        # The checkpointed high watermark may be stale after a crash (it is
        # written periodically); alone in the ISR, everything in the log is
        # committed.
        if len(self.isr) == 1:
            log.set_high_watermark(log.log_end_offset)

    # -- state ---------------------------------------------------------------

    @property
    def leader_epoch(self) -> int:
        return self.info.leader_epoch

    @property
    def high_watermark(self) -> int:
        return self.log.high_watermark

    @property
    def last_stable_offset(self) -> int:
        return self.log.high_watermark

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def offline(self) -> bool:
        return self.log.offline is not None

    @property
    def config(self):
        return self.log.config

    @property
    def size_in_bytes(self) -> int:
        return self.log.size_in_bytes

    @property
    def log_dir(self) -> str:
        return os.path.abspath(self.log.directory.parent)

    @property
    def offset_lag(self) -> int:
        """How far the log end is past the high watermark, never below 0
        (DescribeLogDirs' lag: 0 for a leader)."""
        return max(self.log.high_watermark - self.log.log_end_offset, 0)

    def check_online(self) -> None:
        """KafkaError KAFKA_STORAGE_ERROR if the log directory has failed."""
        if self.log.offline is not None:
            try:
                self.log.check_online()
            except KafkaStorageError as exc:
                raise storage_error(exc) from None

    def become(self, info: PartitionInfo, role: Role) -> None:
        """A new state (leader epoch) or role from the cluster metadata;
        waiting long polls wake to look again."""
        self.info = info
        self.role = role
        self.wake()

    def check_leader(self) -> None:
        if self.role is not Role.LEADER:
            raise KafkaError(
                ErrorCode.NOT_LEADER_OR_FOLLOWER,
                f"broker {self.node_id} is not the leader of {self.topic}-{self.index}",
            )

    def check_leader_epoch(self, current: int) -> None:
        """A request's current leader epoch (-1: not checked) against ours:
        an older one is fenced, a newer one not known here yet."""
        if current >= 0 and current != self.info.leader_epoch:
            if current < self.info.leader_epoch:
                raise KafkaError(
                    ErrorCode.FENCED_LEADER_EPOCH, f"epoch {current} is older than {self.info.leader_epoch}"
                )
            raise KafkaError(ErrorCode.UNKNOWN_LEADER_EPOCH, f"epoch {current} is newer than {self.info.leader_epoch}")

    # -- the high watermark --------------------------------------------------

    def update_replica_leo(self, replica_id: int, log_end_offset: int) -> None:
        """A follower's log end offset, as its fetch reports it."""
        self._replica_leos[replica_id] = log_end_offset
        self.maybe_advance_high_watermark()

    def follower_fetched(self, replica_id: int, fetch_offset: int, now_ms: int) -> None:
        """Leader: follower ``replica_id`` fetched from ``fetch_offset``, so
        it holds everything below it (and, unless the topic has
        write.caching, has fsynced it). Its replica state is updated, the
        ISR may grow, the high watermark may advance."""
        self.update_replica_leo(replica_id, fetch_offset)

    def set_isr(self, isr) -> None:
        self.isr = frozenset(isr)
        self.maybe_advance_high_watermark()

    def maybe_advance_high_watermark(self) -> bool:
        """Move the high watermark to the smallest log end over the ISR,
        never back; True if it moved (waiters are woken)."""
        log = self.log
        leo = log.log_end_offset
        if len(self.isr) > 1:
            leos = self._replica_leos
            for replica in self.isr:
                if replica != self.node_id:
                    leo = min(leo, leos.get(replica, log.log_start_offset))
        if leo <= log.high_watermark:
            return False
        log.set_high_watermark(leo)
        self.wake()
        return True

    # -- appends -------------------------------------------------------------

    def append_as_leader(self, batch: RecordBatch, now: int) -> AppendResult:
        """Append one client batch the caller has checked (CRC, records):
        producer checks first (KafkaError INVALID_PRODUCER_EPOCH,
        OUT_OF_ORDER_SEQUENCE_NUMBER), a duplicate comes back with its
        original offsets, unwritten."""
        if self.role is not Role.LEADER:
            self.check_leader()
        try:
            result = self.log.append_as_leader([batch], leader_epoch=self.info.leader_epoch, now=now)
        except KafkaStorageError as exc:
            raise storage_error(exc) from None
        except ProducerStateError as exc:
            raise KafkaError(ErrorCode[exc.error], str(exc)) from None
        if len(self.isr) == 1:  # alone in the ISR: committed at once
            self.log.set_high_watermark(self.log.log_end_offset)
            if self._waiters:
                self.wake()
        else:
            self.maybe_advance_high_watermark()
        return result

    # -- reads ---------------------------------------------------------------

    def read(
        self,
        offset: int,
        max_bytes: int,
        isolation: int = 0,
        replica_id: int = -1,
        current_leader_epoch: int = -1,
        min_one_message: bool = False,
        zero_copy: bool = False,
    ) -> FetchRead:
        """Whole batches from ``offset``, up to the high watermark (the last
        stable offset for read_committed), at most ``max_bytes`` unless
        ``min_one_message`` lets the first batch exceed it (KIP-74). Only
        consumers fetch so far (``replica_id`` -1). Raises KafkaError
        KAFKA_STORAGE_ERROR. Fetch calls this once per partition of every
        request: keep it lean (positional arguments, no object but the
        answer)."""
        log = self.log
        hw = log.high_watermark
        lso = hw  # until there are transactions
        start = log.log_start_offset
        if current_leader_epoch >= 0 and current_leader_epoch != self.info.leader_epoch:
            code = (
                ErrorCode.FENCED_LEADER_EPOCH
                if current_leader_epoch < self.info.leader_epoch
                else ErrorCode.UNKNOWN_LEADER_EPOCH
            )
            return FetchRead(b"", hw, lso, start, code)
        if self.role is not Role.LEADER and replica_id < 0:
            # Kafka answers a read it refuses with unknown (-1) offsets.
            return FetchRead(b"", -1, -1, -1, ErrorCode.NOT_LEADER_OR_FOLLOWER)
        if max_bytes <= 0 and not min_one_message:
            return FetchRead(b"", hw, lso, start, ErrorCode.NONE)
        try:
            # An offline log refuses the read (KafkaStorageError).
            data = log.read(offset, max(max_bytes, 1), lso if isolation == READ_COMMITTED else hw, zero_copy)[0]
        except OffsetOutOfRangeError:
            return FetchRead(b"", hw, lso, start, ErrorCode.OFFSET_OUT_OF_RANGE)
        except KafkaStorageError as exc:
            raise storage_error(exc) from None
        if not min_one_message and len(data) > max_bytes:
            data = b""  # only the response's first batch may exceed the limits
        return _fetch_read(FetchRead, (data, hw, lso, start, ErrorCode.NONE))

    def fetch_offset_for_timestamp(
        self, timestamp: int, isolation: int = 0, replica_id: int = -1, current_leader_epoch: int = -1
    ) -> tuple[int, int, int]:
        """ListOffsets: (timestamp, offset, leader epoch) for -1 latest (the
        high watermark; the last stable offset for read_committed; the log
        end for the debug replica -2), -2 earliest, -3 the largest timestamp,
        or the first record at or after ``timestamp``; (-1, -1, -1) when
        there is none. Raises KafkaError."""
        log = self.log
        try:
            if log.offline is not None:
                log.check_online()
            self.check_leader_epoch(current_leader_epoch)
            if replica_id != DEBUG_REPLICA:
                self.check_leader()
            if timestamp == LATEST:
                if replica_id == DEBUG_REPLICA:
                    found = (-1, log.log_end_offset)
                else:
                    found = (-1, self.last_stable_offset if isolation == READ_COMMITTED else log.high_watermark)
            elif timestamp == EARLIEST:
                found = (-1, log.log_start_offset)
            elif timestamp == MAX_TIMESTAMP:
                found = log.max_timestamp()
            elif timestamp < 0:
                raise KafkaError(ErrorCode.INVALID_REQUEST, f"unknown special timestamp {timestamp}")
            else:
                found = log.offset_for_timestamp(timestamp) or (-1, -1)
                if found[1] >= log.high_watermark:
                    found = (-1, -1)
        except KafkaStorageError as exc:
            raise storage_error(exc) from None
        if found[1] < 0:
            return found[0], found[1], -1
        epoch = log.epochs.epoch_for_offset(found[1])
        return found[0], found[1], self.info.leader_epoch if epoch is None else epoch

    def delete_records(self, offset: int) -> int:
        """DeleteRecords: move the log start up to ``offset`` (-1: the high
        watermark); the new log start. Raises KafkaError."""
        log = self.log
        try:
            if log.offline is not None:
                log.check_online()
            self.check_leader()
            if not log.config.delete:
                raise KafkaError(ErrorCode.POLICY_VIOLATION, "the topic's cleanup.policy does not include delete")
            if offset == -1:
                offset = log.high_watermark
            if offset < 0 or offset > log.high_watermark:
                raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE, f"offset {offset} is not in [0, {log.high_watermark}]")
            return log.delete_records(offset)
        except KafkaStorageError as exc:
            raise storage_error(exc) from None

    def end_offset_for_epoch(self, requested: int, current_leader_epoch: int = -1) -> tuple[int, int]:
        """OffsetForLeaderEpoch: (epoch, end offset) of ``requested``.
        Raises KafkaError."""
        self.check_online()
        self.check_leader_epoch(current_leader_epoch)
        self.check_leader()
        return end_offset_for(self.log, self.info.leader_epoch, requested)

    # -- long polls ----------------------------------------------------------

    def park(self, event: trio.Event) -> None:
        self._waiters.add(event)

    def unpark(self, event: trio.Event) -> None:
        self._waiters.discard(event)

    def wake(self) -> None:
        if self._waiters:
            for event in self._waiters:
                event.set()
            self._waiters.clear()


def end_offset_for(log, leader_epoch: int, requested: int) -> tuple[int, int]:
    """(epoch, end offset) as Kafka's epoch cache answers, the current leader
    epoch counted as starting at the log end when the cache lacks it.

    Kafka's leader writes its epoch into the epoch cache when elected,
    before any record; ours is written by the first append, so an epoch
    newer than the cache's latest is taken to start at the log end, as it
    would in Kafka."""
    cache = log.epochs
    latest = cache.latest_epoch
    if requested == UNDEFINED or requested > leader_epoch:
        return UNDEFINED, UNDEFINED
    if latest is None or latest < leader_epoch:
        # The cache stands as if (leader_epoch, log end) were its last entry.
        if latest is None:
            return requested, log.log_end_offset
        if requested == leader_epoch:
            return leader_epoch, log.log_end_offset
        if requested >= latest:
            return latest, log.log_end_offset
    return cache.end_offset_for(requested, log.log_end_offset)


async def next_append(parts) -> None:
    """Until the next append to any of ``parts`` (or their deletion, which
    wakes their waiters too); the caller bounds the wait."""
    event = trio.Event()
    for part in parts:
        part.park(event)
    try:
        await event.wait()
    finally:
        for part in parts:
            part.unpark(event)
