"""The partitions this broker hosts, and the one way to append to them.

``append`` is synchronous: it checks the request against the partition
(unknown partition, ``min.insync.replicas`` for acks=-1, the producer's
epoch and sequence) and writes the batch to the leader's log. Whoever
needs the batch committed then awaits ``until_committed`` once for all
the batches of its request, as Kafka's DelayedProduce: a batch is done
when the high watermark is past it (then NOT_ENOUGH_REPLICAS_AFTER_APPEND
if the ISR has fallen below ``min.insync.replicas`` meanwhile), or when
leadership moved (NOT_LEADER_OR_FOLLOWER: a role or leader epoch change
wakes the waiters), or at the caller's timeout (REQUEST_TIMED_OUT). A
partition alone (every single-node partition) is committed at once and,
unless its topic has ``write.caching=true``, waits for a group-commit
fsync round shared with every other waiter (flusher.py); a partition with
followers needs no such round, its high watermark counts only what the
leader fsynced. acks=0/1 callers do not wait.

The manager is also the partitions' host: the broker's
``replica.lag.time.max.ms``, which brokers are alive, where ISR changes
go (``isr_writer``, cluster mode) and flush requests; and in cluster mode
``run_isr_expiration`` checks every lag/2 ms for followers to drop from
the ISR (Kafka's isr-expiration task).
"""

from __future__ import annotations

import enum
import logging
import os
import time
from typing import NamedTuple

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.record_batch import RecordBatch
from pybroker.storage.log import KafkaStorageError

from .flusher import Flusher
from .isr import IsrChange
from .partition import Partition, Role, now_ms, storage_error, until_committed_at

log = logging.getLogger("pybroker.replica")


class Origin(enum.Enum):
    CLIENT = "client"  # a producer's batch
    COORDINATOR = "coordinator"  # built by the broker: group/transaction records, markers
    REPLICATION = "replication"  # a follower appending its leader's batches


class Appended:
    """Where one batch went: its offsets, or a duplicate's original ones."""

    __slots__ = (
        "base_offset",
        "duplicate",
        "last_offset",
        "leader_epoch",
        "log_append_time",
        "log_start_offset",
        "partition",
    )

    def __init__(
        self,
        partition: Partition,
        base_offset: int,
        last_offset: int,
        log_append_time: int,
        log_start_offset: int,
        duplicate: bool,
        leader_epoch: int = -1,
    ):
        self.partition = partition
        self.base_offset = base_offset
        self.last_offset = last_offset
        self.log_append_time = log_append_time
        self.log_start_offset = log_start_offset
        self.duplicate = duplicate
        self.leader_epoch = leader_epoch  # the leadership that must commit it

    def __repr__(self) -> str:
        p = self.partition
        return f"Appended({p.topic}-{p.index}, {self.base_offset}..{self.last_offset}, duplicate={self.duplicate})"


class LogDirInfo(NamedTuple):
    """One log directory for DescribeLogDirs: its error (an offline or
    unreadable directory has no partitions), its volume's sizes, and the
    partitions in it."""

    path: str
    error: ErrorCode
    total_bytes: int
    usable_bytes: int
    partitions: list[Partition]


class ReplicaManager:
    def __init__(self, node_id: int, producer_expiration_ms: int, replica_lag_time_max_ms: int = 30000):
        self.node_id = node_id
        self.producer_expiration_ms = producer_expiration_ms
        self.max_lag_ms = replica_lag_time_max_ms
        self.partitions: dict[tuple[str, int], Partition] = {}
        self.flusher = Flusher()
        self.logs = None  # the LogManager, once the logs are open
        # The cluster metadata (read only), to tell a partition that exists
        # elsewhere from one that does not exist at all, and which brokers
        # are alive.
        self.metadata = None
        # Where leaders' ISR changes are written (cluster mode): an object
        # with ``propose(partition, change)``; None keeps them in flight.
        self.isr_writer = None
        # Cluster mode: the leader lease (lease.py); leaders serve only
        # while it holds. None (a single node) leads unconditionally.
        self.lease = None
        # ISR changes seen by this broker's leaders (the metrics' counters).
        self.isr_shrinks = self.isr_expands = 0

    # -- hosting ---------------------------------------------------------------

    def partition(self, topic: str, index: int) -> Partition | None:
        return self.partitions.get((topic, index))

    def missing(self, topic: str, index: int) -> KafkaError:
        """Why this broker does not host ``topic-index``: the partition
        exists on other brokers (NOT_LEADER_OR_FOLLOWER), or nowhere
        (UNKNOWN_TOPIC_OR_PARTITION) — Kafka's ReplicaManager
        ``getPartitionOrError``."""
        info = self.metadata.topic(topic) if self.metadata is not None else None
        if info is not None and 0 <= index < len(info.partitions):
            return KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER, f"this broker hosts no replica of {topic}-{index}")
        return KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"this broker hosts no partition {topic}-{index}")

    def add(self, topic: str, index: int, plog, info) -> Partition:
        part = self.partitions[(topic, index)] = Partition(topic, index, plog, info, self.node_id, self)
        return part

    # -- the partitions' host ---------------------------------------------------

    def alive(self, node_id: int) -> bool:
        metadata = self.metadata
        return metadata is None or metadata.broker(node_id) is not None

    def serving(self) -> bool:
        lease = self.lease
        return lease is None or lease.valid(time.monotonic())

    def propose_isr(self, part: Partition, change: IsrChange) -> None:
        if self.isr_writer is not None:
            self.isr_writer.propose(part, change)

    def request_flush(self, part: Partition) -> None:
        self.flusher.request(part.log, part.flushed)

    def remove(self, topic: str, index: int) -> Partition | None:
        """Stop hosting a partition (its topic was deleted); its waiters wake."""
        part = self.partitions.pop((topic, index), None)
        if part is not None:
            part.wake()
        return part

    # -- appending -------------------------------------------------------------

    def append(
        self, topic: str, index: int, batch: RecordBatch, *, now: int, acks: int, origin: Origin = Origin.CLIENT
    ) -> Appended:
        """Write one batch to the leader's log (see the module docstring);
        raises KafkaError when it is refused."""
        part = self.partitions.get((topic, index))
        if part is None:
            raise self.missing(topic, index)
        if origin is not Origin.REPLICATION:
            part.check_leader()  # before min.insync.replicas, as Kafka checks
        if acks == -1 and len(part.isr) < part.log.config.min_insync_replicas:
            raise KafkaError(
                ErrorCode.NOT_ENOUGH_REPLICAS,
                f"the in-sync replicas of {topic}-{index} are {len(part.isr)}, "
                f"below min.insync.replicas={part.log.config.min_insync_replicas}",
            )
        if origin is Origin.COORDINATOR and len(batch.view) > part.log.config.max_message_bytes:
            # The producers' batches were measured by the record check; the
            # broker's own (a group's assignment) are measured here, as
            # Kafka's LogValidator measures every non-replicated batch.
            raise KafkaError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"a batch of {len(batch.view)} bytes is over max.message.bytes of {topic}",
            )
        if origin is Origin.REPLICATION:
            try:
                r = part.log.append_as_follower(batch.view, now=now)
            except KafkaStorageError as exc:
                raise storage_error(exc) from None
        else:
            r = part.append_as_leader(batch, now)
        return Appended(
            part,
            r.base_offset,
            r.last_offset,
            r.log_append_time,
            part.log.log_start_offset,
            r.duplicate,
            part.info.leader_epoch,
        )

    async def until_committed(
        self, appended: list[Appended], timeout_ms: int | None = None
    ) -> dict[Appended, KafkaError]:
        """Wait until each batch is committed, or has failed (see the module
        docstring): {appended: error} for the failures, empty when none
        failed. ``timeout_ms`` bounds the wait for the followers."""
        failures: dict[Appended, KafkaError] = {}
        replicated = [
            a for a in appended if a.partition.leader_state is not None or a.partition.role is not Role.LEADER
        ]
        if replicated:
            await self._until_replicated(replicated, failures, timeout_ms)
            appended = [a for a in appended if a not in failures and a.partition.leader_state is None]
        durable = [a for a in appended if not a.partition.log.config.write_caching]
        if not durable:
            return failures
        failed = await self.flusher.flush([a.partition.log for a in durable])
        for a in durable:
            part = a.partition
            if self.partitions.get((part.topic, part.index)) is not part:
                # Deleted before its fsync: Kafka's DelayedProduce finds no partition.
                failures[a] = KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "the partition was deleted")
            elif part.log in failed:
                failures[a] = KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, failed[part.log])
        return failures

    async def _until_replicated(
        self, waiting: list[Appended], failures: dict[Appended, KafkaError], timeout_ms: int | None
    ) -> None:
        """Kafka's DelayedProduce over the batches of partitions with
        followers: each ends committed, failed, or timed out."""
        deadline = float("inf") if timeout_ms is None else trio.current_time() + max(timeout_ms, 0) / 1000
        with trio.move_on_at(deadline):
            while True:
                waiting = [a for a in waiting if not self._settled(a, failures)]
                if not waiting:
                    return
                needed: dict = {}
                for a in waiting:
                    part = a.partition
                    needed[part] = max(needed.get(part, 0), a.last_offset + 1)
                await until_committed_at(needed)
        for a in waiting:
            if a not in failures and not self._settled(a, failures):
                failures[a] = KafkaError(
                    ErrorCode.REQUEST_TIMED_OUT,
                    f"the in-sync replicas did not all get {a} within {timeout_ms} ms",
                )

    def _settled(self, a: Appended, failures: dict[Appended, KafkaError]) -> bool:
        """Whether ``a`` is done waiting (a failure is recorded in ``failures``)."""
        part = a.partition
        if self.partitions.get((part.topic, part.index)) is not part:
            failures[a] = KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "the partition was deleted")
        elif part.role is not Role.LEADER or part.info.leader_epoch != a.leader_epoch:
            # Even if the high watermark covers the offset now, it may be
            # another leader's record there.
            failures[a] = KafkaError(
                ErrorCode.NOT_LEADER_OR_FOLLOWER,
                f"broker {self.node_id} lost the leadership of {part.topic}-{part.index} (leader epoch "
                f"{a.leader_epoch}) before the batch was committed",
            )
        elif part.log.offline is not None:
            failures[a] = KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, part.log.offline)
        elif part.log.high_watermark <= a.last_offset:
            return False
        elif len(part.maximal_isr) < part.log.config.min_insync_replicas:
            failures[a] = KafkaError(
                ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                f"the in-sync replicas of {part.topic}-{part.index} fell to {len(part.maximal_isr)}, below "
                f"min.insync.replicas={part.log.config.min_insync_replicas}",
            )
        return True

    async def run(self) -> None:
        """The group-commit fsync rounds, until cancelled."""
        await self.flusher.run()

    async def run_isr_expiration(self) -> None:
        """Every replica.lag.time.max.ms / 2: leaders propose dropping the
        followers not caught up (cluster mode), until cancelled."""
        period = max(self.max_lag_ms, 2) / 2000
        while True:
            await trio.sleep(period)
            self.shrink_isrs(now_ms())

    def shrink_isrs(self, now: int) -> int:
        """One round of the ISR expiration check; how many shrinks it proposed."""
        proposed = 0
        for part in list(self.partitions.values()):
            if part.leader_state is None:
                continue
            try:
                if part.maybe_shrink_isr(now) is not None:
                    proposed += 1
            except Exception:
                log.exception("the ISR check of %s-%d failed", part.topic, part.index)
        return proposed

    # -- producer state ---------------------------------------------------------

    def snapshot_producers(self) -> None:
        """Snapshot every online partition's producer state; one that cannot
        be written takes its log dir offline (the next start recovers the
        state from an older snapshot and the log)."""
        for part in list(self.partitions.values()):
            if part.offline:
                continue
            try:
                part.log.take_producer_snapshot()
            except OSError:
                pass  # its directory is offline now, and the failure logged

    def checkpoint_producers(self, now_ms: int | None = None) -> None:
        """Forget producers idle for ``producer.id.expiration.ms``, then snapshot."""
        self.expire_producers(now_ms)
        self.snapshot_producers()

    def expire_producers(self, now_ms: int | None = None) -> int:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        limit = now_ms - self.producer_expiration_ms
        return sum(part.log.expire_producers(limit) for part in self.partitions.values())

    # -- log directories ---------------------------------------------------------

    def describe_log_dirs(self, log_dirs, wanted: set[tuple[str, int]] | None) -> list[LogDirInfo]:
        """Each of ``log_dirs`` with its partitions (those in ``wanted``, or all)."""
        by_dir: dict[str, list[Partition]] = {}
        for key, part in self.partitions.items():
            if wanted is None or key in wanted:
                by_dir.setdefault(part.log_dir, []).append(part)
        out = []
        for d in log_dirs:
            path = os.path.abspath(d)
            if self.logs is not None and self.logs.dir_failure(d) is not None:
                out.append(LogDirInfo(path, ErrorCode.KAFKA_STORAGE_ERROR, -1, -1, []))
                continue
            try:
                st = os.statvfs(path)
            except OSError:
                out.append(LogDirInfo(path, ErrorCode.KAFKA_STORAGE_ERROR, -1, -1, []))
                continue
            out.append(
                LogDirInfo(
                    path, ErrorCode.NONE, st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize, by_dir.get(path, [])
                )
            )
        return out
