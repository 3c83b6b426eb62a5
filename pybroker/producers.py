"""Idempotent producers: producer ids, epochs and sequence de-duplication.

Per partition and producer id the broker remembers the epoch and the
metadata of the last five batches it appended (first and last sequence,
base offset). A batch is checked before it is appended:

* an epoch below the known one is fenced: INVALID_PRODUCER_EPOCH;
* a batch equal to one of the five (same epoch and sequence range) is a
  retry of something already written: it is answered with the original
  offsets and not written again;
* with the same epoch, the first sequence must follow the last one (int32
  wrapping to 0); otherwise OUT_OF_ORDER_SEQUENCE_NUMBER;
* a new epoch must start at sequence 0; a producer id we hold no state for
  is accepted at any sequence (its state may have expired), as Kafka does.

State survives restarts the way Kafka's does: a snapshot file
(storage.producer_snapshot) is written beside the segments periodically
and on a clean stop, and on start the newest snapshot not beyond the log
end is loaded and the batch headers after it are replayed (every batch of
an idempotent producer carries its id, epoch and sequences). A snapshot
keeps only each producer's last batch, as Kafka's does, so right after a
restart a retry of that batch is recognised; older retries were answered
before the stop. Idle producers are forgotten after
``producer.id.expiration.ms`` (measured from their last batch's timestamp).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.record_batch import CONTROL_BIT, HEADER, HEADER_SIZE
from pybroker.storage.producer_snapshot import (
    CorruptSnapshotError,
    SnapshotEntry,
    delete_snapshots,
    list_snapshots,
    read_snapshot,
    snapshot_path,
    write_snapshot,
)

log = logging.getLogger("pybroker.producers")
SNAPSHOTS_KEPT = 2

NO_PRODUCER_ID = -1
MAX_CACHED_BATCHES = 5
INT32_MAX = 0x7FFFFFFF


@dataclass(slots=True)
class BatchMeta:
    first_seq: int
    last_seq: int
    base_offset: int
    last_offset: int
    timestamp: int


@dataclass(slots=True)
class ProducerEntry:
    epoch: int
    batches: deque = field(default_factory=lambda: deque(maxlen=MAX_CACHED_BATCHES))
    last_seen_ms: int = 0

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1


class DuplicateBatch(Exception):
    def __init__(self, meta: BatchMeta):
        self.meta = meta


class SequenceError(Exception):
    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


def next_seq(seq: int) -> int:
    return 0 if seq == INT32_MAX else seq + 1


class PartitionProducers:
    """Producer state of one partition."""

    def __init__(self):
        self.entries: dict[int, ProducerEntry] = {}

    def check(self, producer_id: int, epoch: int, first_seq: int, last_seq: int) -> None:
        """Raise DuplicateBatch or SequenceError if the batch must not be appended."""
        entry = self.entries.get(producer_id)
        if entry is None:
            return
        if epoch < entry.epoch:
            raise SequenceError(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"producer {producer_id} epoch {epoch} is older than the current epoch {entry.epoch}",
            )
        if epoch > entry.epoch:
            if first_seq != 0:
                raise SequenceError(
                    ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                    f"producer {producer_id} started epoch {epoch} at sequence {first_seq}, not 0",
                )
            return
        for meta in entry.batches:
            if meta.first_seq == first_seq and meta.last_seq == last_seq:
                raise DuplicateBatch(meta)
        if entry.batches and first_seq != next_seq(entry.last_seq):
            raise SequenceError(
                ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                f"producer {producer_id} sent sequence {first_seq}, expected {next_seq(entry.last_seq)}",
            )

    def update(self, producer_id: int, epoch: int, meta: BatchMeta, now: int) -> None:
        entry = self.entries.get(producer_id)
        if entry is None or epoch != entry.epoch:
            entry = self.entries[producer_id] = ProducerEntry(epoch)
        entry.batches.append(meta)
        entry.last_seen_ms = now

    def to_snapshot(self) -> list[SnapshotEntry]:
        out = []
        for pid, entry in self.entries.items():
            if entry.batches:
                last = entry.batches[-1]
                delta = last.last_offset - last.base_offset
                out.append(SnapshotEntry(pid, entry.epoch, last.last_seq, last.last_offset, delta, entry.last_seen_ms))
        return out

    def load_snapshot(self, entries: list[SnapshotEntry]) -> None:
        for e in entries:
            first_seq = (e.last_sequence - e.offset_delta) % (INT32_MAX + 1) if e.last_sequence >= 0 else -1
            meta = BatchMeta(first_seq, e.last_sequence, e.last_offset - e.offset_delta, e.last_offset, e.timestamp)
            self.update(e.producer_id, e.epoch, meta, e.timestamp)

    def replay(self, log, start: int) -> int:
        """Rebuild from the batch headers of ``log`` at offsets >= ``start``."""
        n = 0
        for seg in log.segments:
            if seg.next_offset <= start:
                continue
            _, position = seg.offset_index.lookup(start)
            for info in seg.scan_headers(position):
                if info.base_offset < start:
                    continue
                h = HEADER.unpack(seg.read_at(info.position, HEADER_SIZE))
                producer_id, epoch, base_seq, attributes = h[9], h[10], h[11], h[5]
                if producer_id < 0 or attributes & CONTROL_BIT:
                    continue
                last_seq = (base_seq + h[6]) % (INT32_MAX + 1)
                self.update(
                    producer_id, epoch, BatchMeta(base_seq, last_seq, info.base_offset, info.last_offset, h[8]), h[8]
                )
                n += 1
        return n

    def expire(self, older_than_ms: int) -> int:
        gone = [pid for pid, e in self.entries.items() if e.last_seen_ms < older_than_ms]
        for pid in gone:
            del self.entries[pid]
        return len(gone)


class ProducerStates:
    """Producer-id allocation and the per-partition states of one broker."""

    def __init__(self, broker):
        self.broker = broker
        self._ids = iter(())
        self.partitions: dict[tuple[str, int], PartitionProducers] = {}

    def new_producer_id(self) -> int:
        for pid in self._ids:
            return pid
        self._ids = iter(self.broker.metadata.allocate_producer_ids())
        return next(self._ids)

    def for_partition(self, topic: str, index: int) -> PartitionProducers:
        key = (topic, index)
        state = self.partitions.get(key)
        if state is None:
            state = self.partitions[key] = PartitionProducers()
        return state

    def forget_partition(self, topic: str, index: int) -> None:
        self.partitions.pop((topic, index), None)

    def load(self, topic: str, index: int, plog) -> PartitionProducers:
        """Rebuild a partition's state on start: newest usable snapshot, then replay."""
        state = self.partitions[(topic, index)] = PartitionProducers()
        end = plog.log_end_offset
        usable = delete_snapshots(plog.directory, lambda offset: offset <= end)
        start = plog.log_start_offset
        for offset in reversed(usable):
            try:
                state.load_snapshot(read_snapshot(snapshot_path(plog.directory, offset)))
            except (CorruptSnapshotError, OSError) as exc:
                log.warning("ignoring producer snapshot of %s-%d: %s", topic, index, exc)
                snapshot_path(plog.directory, offset).unlink(missing_ok=True)
                continue
            start = max(offset, start)
            break
        state.replay(plog, start)
        return state

    def snapshot(self, topic: str, index: int, plog) -> None:
        state = self.partitions.get((topic, index))
        end = plog.log_end_offset
        existing = list_snapshots(plog.directory)
        if existing and existing[-1] == end:
            return
        write_snapshot(plog.directory, end, state.to_snapshot() if state else [])
        offsets = sorted({*existing, end})
        kept = set(offsets[-SNAPSHOTS_KEPT:])
        delete_snapshots(plog.directory, kept.__contains__, offsets)

    def snapshot_all(self) -> None:
        """Snapshot every online partition; a snapshot that cannot be
        written takes its log dir offline (the log is recovered from an
        older snapshot and a scan at the next start)."""
        for (topic, index), part in list(self.broker.partitions.items()):
            if part.offline:
                continue
            try:
                self.snapshot(topic, index, part.log)
            except OSError as exc:
                part.log.io_failed(exc)

    def expire(self, now_ms: int | None = None) -> int:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        limit = now_ms - self.broker.config["producer.id.expiration.ms"]
        return sum(p.expire(limit) for p in self.partitions.values())

    def checkpoint(self) -> None:
        self.expire()
        self.snapshot_all()
