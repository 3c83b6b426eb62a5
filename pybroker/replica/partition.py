"""One partition replica this broker hosts, over its log.

The replica's role, its leader epoch and in-sync replica set, the high
watermark and last stable offset, the checks of a request's leader epoch,
reads for Fetch, appends, offsets by timestamp, DeleteRecords, end offsets
of epochs, and the long-poll waiters: consumers and acks=all produces wait
for the high watermark to move, followers for any append.

The role and leader epoch come from the partition's state (on a single
node this broker leads everything; in cluster mode the state znode names
the leader, and ``become`` applies each newer state). A follower answers
clients as Kafka's does (``Partition.localLogWithEpochOrThrow``): the
request's leader epoch is checked first, then leadership,
NOT_LEADER_OR_FOLLOWER.

A partition with one replica (every partition of a single node) is
committed as soon as it is appended: its high watermark is its log end.
A leader with followers keeps a ``LeaderState`` (isr.py: the followers'
progress, the ISR and its changes, the high-watermark rule) fed by the
followers' fetches (``follower_fetched``) and a periodic shrink check;
ISR changes go to the host's ISR writer (cluster/zk_isr.py), which reports
back ``isr_change_committed``. Unless the topic has ``write.caching``, the
leader counts only its fsynced offset (the log's recovery point) toward
the high watermark, and asks the group commit (flusher.py) for a flush
after each append; the flush's completion moves the high watermark. On
becoming leader at a new leader epoch, the epoch and the log end are
written to the leader-epoch cache before anything is served (Kafka's
makeLeader), so OffsetForLeaderEpoch and followers' truncation are exact.
Clients read below the high watermark; the last stable offset equals it
until there are transactions.

A partition whose log directory has failed is offline (Kafka's
HostedPartition.Offline): storage refuses every operation with
KafkaStorageError, which this layer turns into KafkaError
KAFKA_STORAGE_ERROR for the handlers; Metadata reports it without a
leader.
"""

from __future__ import annotations

import enum
import heapq
import logging
import os
import time
from typing import NamedTuple

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.record_batch import RecordBatch
from pybroker.storage.log import AppendResult, KafkaStorageError, OffsetOutOfRangeError, PartitionLog
from pybroker.storage.producer_state import ProducerStateError

from ..cluster.model import PartitionInfo, PartitionState
from .isr import IsrChange, LeaderState

logger = logging.getLogger("pybroker.replica")

UNDEFINED = -1
LATEST, EARLIEST, MAX_TIMESTAMP = -1, -2, -3
CONSUMER, DEBUG_REPLICA = -1, -2
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
    # read_committed: the aborted transactions in the records (AbortedTxn)
    aborted: list | None = None


# Makes a FetchRead without the Python frame of a named tuple's __new__.
_fetch_read = tuple.__new__


def storage_error(exc: KafkaStorageError) -> KafkaError:
    return KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, str(exc))


class _Detached:
    """The host of a partition made outside a ReplicaManager (unit tests):
    ISR changes stay in flight until the test commits them, no flush."""

    max_lag_ms = 30000
    isr_shrinks = isr_expands = 0

    def alive(self, replica_id: int) -> bool:
        return True

    def serving(self) -> bool:
        return True

    def propose_isr(self, part: Partition, change: IsrChange) -> None:
        pass

    def request_flush(self, part: Partition) -> None:
        pass


_DETACHED = _Detached()


def now_ms() -> int:
    return int(time.time() * 1000)


class Partition:
    __slots__ = (
        "_commit_waiters",
        "_data_waiters",
        "_host",
        "_led_epoch",
        "_waiters",
        "bytes_in",
        "bytes_out",
        "epoch_start",
        "index",
        "info",
        "isr",
        "leader_state",
        "log",
        "messages_in",
        "node_id",
        "role",
        "topic",
    )

    def __init__(self, topic: str, index: int, log: PartitionLog, info: PartitionInfo, node_id: int = 0, host=None):
        self.topic = topic
        self.index = index
        self.log = log
        self.info = info
        self.node_id = node_id
        self._host = _DETACHED if host is None else host
        self.isr: frozenset[int] = frozenset(info.isr) if info.isr else frozenset((node_id,))
        # Followers' progress and the ISR while leading with followers;
        # None alone (every single-node partition) or as a follower.
        self.leader_state: LeaderState | None = None
        # The leader epoch this replica became leader at, and the offset
        # that epoch started from (None until it becomes leader in cluster mode).
        self._led_epoch: int | None = None
        self.epoch_start: int | None = None
        # Waiters for the high watermark (consumers, acks=all produces) and
        # for any append (followers' long polls). Kept apart because an
        # append that does not move the high watermark — every append of a
        # replicated partition until its followers copy it — would
        # otherwise wake each parked produce and consumer for nothing,
        # which under load costs more than the appends.
        self._waiters: set[trio.Event] = set()
        self._data_waiters: set[trio.Event] = set()
        # acks=all produces, each waking only once the high watermark
        # reaches its offset: a heap of (offset, tiebreak, event). Under
        # load hundreds of requests wait on a partition, and waking them
        # all on each small step of the high watermark cost more than
        # the replication itself.
        self._commit_waiters: list = []
        # For the metrics (Kafka's BrokerTopicMetrics, summed per topic at
        # scrape time): what clients and coordinators appended here as
        # leader, duplicates not counted, and the record bytes Fetch sent
        # to consumers.
        self.messages_in = self.bytes_in = self.bytes_out = 0
        if len(info.replicas) <= 1:
            # The only replica leads. The checkpointed high watermark may be
            # stale after a crash (it is written periodically); alone,
            # everything in the log is committed.
            self.role = Role.LEADER
            log.set_high_watermark(log.log_end_offset)
        else:
            self.role = Role.FOLLOWER  # until ``become`` says otherwise

    # -- state ---------------------------------------------------------------

    @property
    def leader_epoch(self) -> int:
        return self.info.leader_epoch

    @property
    def high_watermark(self) -> int:
        return self.log.high_watermark

    @property
    def last_stable_offset(self) -> int:
        return self.log.last_stable_offset

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

    @property
    def maximal_isr(self) -> frozenset[int]:
        """The ISR acks=all counts: the committed one and a pending expand."""
        leader = self.leader_state
        return self.isr if leader is None else leader.maximal_isr

    @property
    def pending_isr_change(self) -> IsrChange | None:
        leader = self.leader_state
        return None if leader is None else leader.pending

    def check_online(self) -> None:
        """KafkaError KAFKA_STORAGE_ERROR if the log directory has failed."""
        if self.log.offline is not None:
            try:
                self.log.check_online()
            except KafkaStorageError as exc:
                raise storage_error(exc) from None

    def become(self, info: PartitionInfo, role: Role) -> None:
        """A state from the cluster metadata, and the role it gives this
        replica. A state older (leader epoch, version) than the one held is
        ignored: this leader's own ISR writes are applied before the
        metadata sees them. Becoming leader at a new leader epoch writes
        (epoch, log end) to the leader-epoch cache first and restarts the
        followers' clocks; a follower forgets them. Waiters wake to look
        again (an acks=all wait ends when leadership went)."""
        held = self.info.state
        state = info.state
        if (state.leader_epoch, state.version) < (held.leader_epoch, held.version):
            return
        self.info = info
        self.isr = frozenset(info.isr)
        if role is Role.LEADER:
            self._lead(info)
        else:
            self.leader_state = None
        self.role = role
        self.wake()

    def _lead(self, info: PartitionInfo) -> None:
        log = self.log
        now = now_ms()
        epoch = info.leader_epoch
        new_epoch = self._led_epoch != epoch
        if new_epoch:
            start = log.log_end_offset
            if log.offline is None:
                try:
                    log.epochs.assign(epoch, start)
                except OSError as exc:
                    # Its directory goes offline: the partition answers
                    # KAFKA_STORAGE_ERROR from now on.
                    log.io_failed(exc)
            self._led_epoch, self.epoch_start = epoch, start
            logger.debug(
                "%s-%d: leader at epoch %d from offset %d, ISR %s", self.topic, self.index, epoch, start, _ids(info.isr)
            )
        if len(info.replicas) <= 1:
            self.leader_state = None
            log.set_high_watermark(log.log_end_offset)
            return
        leader = self.leader_state
        if leader is None:
            self.leader_state = LeaderState(
                self.node_id, info.replicas, info.isr, epoch, info.state.version, self.epoch_start, now
            )
        elif new_epoch:
            # The controller may have taken dead brokers out at this epoch.
            self._log_isr_from_state(leader, info)
            leader.new_epoch(epoch, info.state.version, info.isr, info.replicas, self.epoch_start, now)
        elif info.state.version != leader.version or frozenset(info.isr) != leader.isr:
            self._log_isr_from_state(leader, info)
            leader.apply_state(info.isr, info.state.version)
        if not log.config.write_caching and log.recovery_point < log.log_end_offset:
            self._host.request_flush(self)
        self._advance_high_watermark(now)

    def check_leader(self) -> None:
        """KafkaError NOT_LEADER_OR_FOLLOWER unless this replica leads and
        its broker's lease holds (a leader without it may have been
        replaced already)."""
        if self.role is not Role.LEADER:
            raise KafkaError(
                ErrorCode.NOT_LEADER_OR_FOLLOWER,
                f"broker {self.node_id} is not the leader of {self.topic}-{self.index}",
            )
        if not self._host.serving():
            raise KafkaError(
                ErrorCode.NOT_LEADER_OR_FOLLOWER,
                f"broker {self.node_id} cannot lead {self.topic}-{self.index} now: "
                "its leader lease lapsed (no recent answer from ZooKeeper)",
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

    # -- followers, the ISR and the high watermark ------------------------------

    def follower_fetched(self, replica_id: int, fetch_offset: int, now_ms: int) -> None:
        """Leader: follower ``replica_id`` fetched from ``fetch_offset``
        (wall-clock ``now_ms``), so it holds everything below it (and,
        unless the topic has write.caching, has fsynced it). Its replica
        state is updated, an ISR expand may be proposed, the high watermark
        may advance (waiters wake). Nothing happens on a follower or a
        partition without followers."""
        leader = self.leader_state
        if leader is None:
            return
        log = self.log
        change = leader.follower_fetched(
            replica_id, fetch_offset, now_ms, log.log_end_offset, log.high_watermark, self._host.alive(replica_id)
        )
        if change is not None:
            self._host.propose_isr(self, change)
        self._advance_high_watermark(now_ms)

    def maybe_shrink_isr(self, now_ms: int) -> IsrChange | None:
        """Leader: propose removing the ISR followers not caught up for
        ``replica.lag.time.max.ms`` (the periodic check)."""
        leader = self.leader_state
        if leader is None or self.role is not Role.LEADER or self.log.offline is not None:
            return None
        change = leader.maybe_shrink(now_ms, self.log.log_end_offset, self._host.max_lag_ms)
        if change is not None:
            self._host.propose_isr(self, change)
        return change

    def _log_isr_from_state(self, leader: LeaderState, info: PartitionInfo) -> None:
        if frozenset(info.isr) != leader.isr:
            _count_isr_change(self._host, leader.isr, info.isr)
            logger.info(
                "%s-%d: ISR %s -> %s (leader epoch %d): a newer partition state (version %d)",
                self.topic,
                self.index,
                _ids(leader.isr_order),
                _ids(info.isr),
                info.leader_epoch,
                info.state.version,
            )

    def isr_change_committed(self, change: IsrChange, version: int) -> bool:
        """The ISR writer wrote ``change`` as state ``version``: it is the
        committed ISR now. False (nothing changes) if it was replaced
        meanwhile (a newer state, another leadership)."""
        leader = self.leader_state
        if leader is None or leader.leader_epoch != change.leader_epoch or not leader.committed(change, version):
            return False
        state = self.info.state
        new_state = PartitionState(state.leader, state.leader_epoch, list(change.isr), state.controller_epoch, version)
        self.info = PartitionInfo(self.index, self.info.replicas, new_state, self.info.offline)
        self.isr = leader.isr
        _count_isr_change(self._host, change.old_isr, change.isr)
        logger.info(
            "%s-%d: ISR %s -> %s (leader epoch %d): %s",
            self.topic,
            self.index,
            _ids(change.old_isr),
            _ids(change.isr),
            change.leader_epoch,
            change.reason,
        )
        self._advance_high_watermark(now_ms())
        self.wake()  # acks=all waiters check min.insync.replicas again
        return True

    def isr_change_refused(self, change: IsrChange, why: str) -> None:
        """The write of ``change`` was refused (the state moved on): it
        stays in flight, unretried, until the newer state arrives."""
        if self.pending_isr_change is change:
            logger.info(
                "%s-%d: ISR %s -> %s (leader epoch %d) not written: %s; waiting for the newer state",
                self.topic,
                self.index,
                _ids(change.old_isr),
                _ids(change.isr),
                change.leader_epoch,
                why,
            )

    def flushed(self) -> None:
        """A group-commit round that covered this log is done: the durable
        high watermark may advance; a failed flush (the log is offline now)
        wakes the waiters to find out."""
        if self.log.offline is not None:
            self.wake()
        elif self.leader_state is not None:
            self._advance_high_watermark(now_ms())

    def _advance_high_watermark(self, now: int) -> bool:
        leader = self.leader_state
        log = self.log
        config = log.config
        leo = log.log_end_offset
        current = log.high_watermark
        hw = leader.high_watermark(
            current,
            log.log_start_offset,
            leo,
            leo if config.write_caching else log.recovery_point,
            now,
            self._host.max_lag_ms,
            config.min_insync_replicas,
            self._host.alive,
        )
        if hw <= current:
            return False
        log.set_high_watermark(hw)
        if self._waiters:
            _wake_all(self._waiters)
        waiters = self._commit_waiters
        while waiters and waiters[0][0] <= hw:
            heapq.heappop(waiters)[2].set()
        return True

    # -- appends -------------------------------------------------------------

    def append_as_leader(self, batch: RecordBatch, now: int) -> AppendResult:
        """Append one client batch the caller has checked (CRC, records):
        producer checks first (KafkaError INVALID_PRODUCER_EPOCH,
        OUT_OF_ORDER_SEQUENCE_NUMBER), a duplicate comes back with its
        original offsets, unwritten."""
        self.check_leader()
        try:
            result = self.log.append_as_leader([batch], leader_epoch=self.info.leader_epoch, now=now)
        except KafkaStorageError as exc:
            raise storage_error(exc) from None
        except ProducerStateError as exc:
            raise KafkaError(ErrorCode[exc.error], str(exc)) from None
        if not result.duplicate:
            self.messages_in += result.record_count
            self.bytes_in += len(batch.view)
        if self.leader_state is None:  # the only replica: committed at once
            self.log.set_high_watermark(self.log.log_end_offset)
            if self._waiters or self._data_waiters:
                self.wake()
        else:
            if not self.log.config.write_caching:
                self._host.request_flush(self)
            self._advance_high_watermark(now)
            if self._data_waiters:  # followers copy every append, committed or not
                _wake_all(self._data_waiters)
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
        lso = log.last_stable_offset
        start = log.log_start_offset
        if current_leader_epoch >= 0 and current_leader_epoch != self.info.leader_epoch:
            code = (
                ErrorCode.FENCED_LEADER_EPOCH
                if current_leader_epoch < self.info.leader_epoch
                else ErrorCode.UNKNOWN_LEADER_EPOCH
            )
            return FetchRead(b"", hw, lso, start, code)
        if (self.role is not Role.LEADER and replica_id < 0) or (self.role is Role.LEADER and not self._host.serving()):
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
        aborted = log.aborted_transactions(offset, lso) if isolation == READ_COMMITTED and len(data) else None
        return _fetch_read(FetchRead, (data, hw, lso, start, ErrorCode.NONE, aborted))

    def fetch_offset_for_timestamp(
        self, timestamp: int, isolation: int = 0, replica_id: int = -1, current_leader_epoch: int = -1
    ) -> tuple[int, int, int]:
        """ListOffsets: (timestamp, offset, leader epoch) for -1 latest (the
        high watermark; the last stable offset for read_committed; the log
        end for a replica, such as the debug replica -2), -2 earliest, -3
        the largest timestamp, or the first record at or after
        ``timestamp``; (-1, -1, -1) when there is none. Raises KafkaError:
        OFFSET_NOT_AVAILABLE to a client asking for the latest offset, or
        finding none by timestamp, while a new leader's high watermark is
        below the start of its epoch (it may be below what the previous
        leader had committed: Kafka's fetchOffsetForTimestamp)."""
        log = self.log
        try:
            if log.offline is not None:
                log.check_online()
            self.check_leader_epoch(current_leader_epoch)
            if replica_id != DEBUG_REPLICA:
                self.check_leader()
            if timestamp == LATEST:
                if replica_id != CONSUMER:
                    found = (-1, log.log_end_offset)
                else:
                    self._check_epoch_start_committed()
                    found = (-1, self.last_stable_offset if isolation == READ_COMMITTED else log.high_watermark)
            elif timestamp == EARLIEST:
                found = (-1, log.log_start_offset)
            elif timestamp == MAX_TIMESTAMP:
                found = log.max_timestamp()
            elif timestamp < 0:
                raise KafkaError(ErrorCode.INVALID_REQUEST, f"unknown special timestamp {timestamp}")
            else:
                found = log.offset_for_timestamp(timestamp)
                if found is None or found[1] >= log.high_watermark:
                    found = (-1, -1)
                    if replica_id == CONSUMER:
                        self._check_epoch_start_committed()
        except KafkaStorageError as exc:
            raise storage_error(exc) from None
        if found[1] < 0:
            return found[0], found[1], -1
        epoch = log.epochs.epoch_for_offset(found[1])
        return found[0], found[1], self.info.leader_epoch if epoch is None else epoch

    def _check_epoch_start_committed(self) -> None:
        start = self.epoch_start
        if start is not None and start > self.log.high_watermark and self.role is Role.LEADER:
            raise KafkaError(
                ErrorCode.OFFSET_NOT_AVAILABLE,
                f"the high watermark of {self.topic}-{self.index} ({self.log.high_watermark}) is behind the start "
                f"of leader epoch {self.info.leader_epoch} ({start})",
            )

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

    def park(self, event: trio.Event, appends: bool = False) -> None:
        """Set ``event`` when the high watermark moves (``appends``: on any
        append), or on a change every waiter must look at."""
        (self._data_waiters if appends else self._waiters).add(event)

    def unpark(self, event: trio.Event) -> None:
        self._waiters.discard(event)
        self._data_waiters.discard(event)

    def park_until(self, event: trio.Event, offset: int) -> None:
        """Set ``event`` once the high watermark reaches ``offset``, or on a
        change every waiter must look at. Not unparked: a stale entry is
        dropped when the high watermark passes it or at the next change."""
        if self.log.high_watermark >= offset:
            event.set()
        else:
            heapq.heappush(self._commit_waiters, (offset, id(event), event))

    def wake(self) -> None:
        """Every waiter: the role, leader epoch, ISR or log changed under
        them (or, alone, the high watermark moved)."""
        if self._waiters:
            _wake_all(self._waiters)
        if self._data_waiters:
            _wake_all(self._data_waiters)
        if self._commit_waiters:
            for _, _, event in self._commit_waiters:
                event.set()
            self._commit_waiters.clear()


def _count_isr_change(host, old, new) -> None:
    """Kafka's IsrShrinksPerSec / IsrExpandsPerSec, kept by the host (a
    leader's own change, or one the controller made, as when a broker dies)."""
    if len(new) < len(old):
        host.isr_shrinks += 1
    elif len(new) > len(old):
        host.isr_expands += 1


def _wake_all(waiters: set) -> None:
    for event in waiters:
        event.set()
    waiters.clear()


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


async def next_commit(parts) -> None:
    """Until the high watermark of any of ``parts`` moves, or anything
    else wakes its waiters (a role or ISR change, a deletion); the caller
    bounds the wait."""
    await _next_wake(parts, False)


async def until_committed_at(offsets: dict) -> None:
    """Until the high watermark of any partition of ``offsets`` ({Partition:
    offset}) reaches its offset, or anything else wakes every waiter of
    one; the caller bounds the wait."""
    event = trio.Event()
    for part, offset in offsets.items():
        part.park_until(event, offset)
    await event.wait()


async def next_append(parts) -> None:
    """As ``next_commit``, and on any append to ``parts`` too."""
    await _next_wake(parts, True)


async def _next_wake(parts, appends: bool) -> None:
    event = trio.Event()
    for part in parts:
        part.park(event, appends)
    try:
        await event.wait()
    finally:
        for part in parts:
            part.unpark(event)


def _ids(replicas) -> str:
    return ",".join(map(str, replicas))
