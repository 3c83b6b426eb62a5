"""Producer state of one partition log: idempotent producers' epochs and
sequences, kept beside the log and updated by every append to it.

Per producer id the log remembers the epoch and the metadata of the last
five batches appended (first and last sequence, offsets). A leader checks
a client's batch before appending it (``check``):

* an epoch below the known one is fenced: INVALID_PRODUCER_EPOCH;
* a batch equal to one of the five (same epoch and sequence range) is a
  retry of something already written: it is answered with the original
  offsets and not written again;
* with the same epoch, the first sequence must follow the last one (int32
  wrapping to 0); otherwise OUT_OF_ORDER_SEQUENCE_NUMBER;
* a new epoch must start at sequence 0; a producer id with no state is
  accepted at any sequence (its state may have expired), as Kafka does.

Batches appended without that check (a follower copying its leader, the
broker's own batches) update the state all the same, so that whoever
becomes leader next holds it. The state survives restarts as Kafka's
does: a snapshot file (producer_snapshot) is written beside the segments
periodically and on a clean stop, and on open the newest snapshot not
beyond the log end is loaded and the batch headers after it replayed. A
snapshot keeps only each producer's last batch, as Kafka's does. Idle
producers are forgotten after ``producer.id.expiration.ms``, measured
from their last batch's timestamp.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from pybroker.protocol.record_batch import CONTROL_BIT, HEADER, HEADER_SIZE

from .producer_snapshot import (
    CorruptSnapshotError,
    SnapshotEntry,
    delete_snapshots,
    list_snapshots,
    read_snapshot,
    snapshot_path,
    write_snapshot,
)

log = logging.getLogger("pybroker.storage.producer_state")

NO_PRODUCER_ID = -1
MAX_CACHED_BATCHES = 5
SNAPSHOTS_KEPT = 2


class ProducerStateError(Exception):
    """A batch the producer state refuses; ``error`` is the name of the
    Kafka error code the broker answers it with (this layer knows no codes)."""

    error = ""


class ProducerFenced(ProducerStateError):
    error = "INVALID_PRODUCER_EPOCH"


class OutOfOrderSequence(ProducerStateError):
    error = "OUT_OF_ORDER_SEQUENCE_NUMBER"


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
    # First offset of the producer's open transaction; None while it has
    # none (always, until transactions exist).
    current_txn_first_offset: int | None = None

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1


def next_seq(seq: int) -> int:
    return 0 if seq == INT32_MAX else seq + 1


class ProducerStateManager:
    """The producer state of one partition log."""

    def __init__(self):
        self.entries: dict[int, ProducerEntry] = {}

    # -- appends -------------------------------------------------------------

    def check(self, producer_id: int, epoch: int, first_seq: int, last_seq: int) -> BatchMeta | None:
        """Check a batch a leader is about to append: the original batch's
        metadata when it is a duplicate, None when it may be appended;
        raises ProducerStateError when it must be refused."""
        entry = self.entries.get(producer_id)
        if entry is None:
            return None
        if epoch < entry.epoch:
            raise ProducerFenced(f"producer {producer_id} epoch {epoch} is older than the current epoch {entry.epoch}")
        if epoch > entry.epoch:
            if first_seq != 0:
                raise OutOfOrderSequence(f"producer {producer_id} started epoch {epoch} at sequence {first_seq}, not 0")
            return None
        for meta in entry.batches:
            if meta.first_seq == first_seq and meta.last_seq == last_seq:
                return meta
        if entry.batches and first_seq != next_seq(entry.last_seq):
            raise OutOfOrderSequence(
                f"producer {producer_id} sent sequence {first_seq}, expected {next_seq(entry.last_seq)}"
            )
        return None

    def check_batches(self, batches) -> BatchMeta | None:
        """``check`` over the producer batches of one leader append, each
        against the state the earlier ones of the append leave behind."""
        if len(batches) == 1:
            b = batches[0]
            if b.producer_id < 0 or b.is_control:
                return None
            return self.check(b.producer_id, b.producer_epoch, b.base_sequence, b.last_sequence)
        pending: dict[int, tuple[int, int]] = {}  # producer id -> (epoch, last sequence) so far
        for b in batches:
            pid = b.producer_id
            if pid < 0 or b.is_control:
                continue
            earlier = pending.get(pid)
            if earlier is None:
                dup = self.check(pid, b.producer_epoch, b.base_sequence, b.last_sequence)
                if dup is not None:
                    return dup
            elif b.producer_epoch < earlier[0]:
                raise ProducerFenced(f"producer {pid} epoch {b.producer_epoch} is fenced")
            elif b.base_sequence != (next_seq(earlier[1]) if b.producer_epoch == earlier[0] else 0):
                raise OutOfOrderSequence(f"producer {pid} sent sequence {b.base_sequence}")
            pending[pid] = (b.producer_epoch, b.last_sequence)
        return None

    def update(self, producer_id: int, epoch: int, meta: BatchMeta, now: int) -> None:
        entry = self.entries.get(producer_id)
        if entry is None or epoch != entry.epoch:
            entry = self.entries[producer_id] = ProducerEntry(epoch)
        entry.batches.append(meta)
        # Kafka's lastTimestamp is the batch's max timestamp, not the time of
        # the append: snapshots store it and expiry measures from it.
        entry.last_seen_ms = meta.timestamp if meta.timestamp >= 0 else now

    def appended(self, batch, now: int) -> None:
        """Record a batch just written (offsets assigned), whoever wrote it."""
        pid = batch.producer_id
        if pid < 0 or batch.is_control:
            return
        meta = BatchMeta(
            batch.base_sequence, batch.last_sequence, batch.base_offset, batch.last_offset, batch.max_timestamp
        )
        self.update(pid, batch.producer_epoch, meta, now)

    def last_offsets(self) -> dict[int, int]:
        """{producer id: offset of its last batch}: what compaction keeps."""
        return {pid: e.batches[-1].last_offset for pid, e in self.entries.items() if e.batches}

    # -- snapshots and recovery ------------------------------------------------

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

    def replay(self, plog, start: int) -> int:
        """Rebuild from the batch headers of ``plog`` at offsets >= ``start``."""
        n = 0
        for seg in plog.segments:
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

    def recover(self, plog, snapshots: list[int] | None = None) -> None:
        """Rebuild from scratch: the newest usable snapshot (at or below the
        log end; the others are deleted), then the headers after it.
        ``snapshots`` are the snapshot offsets when the caller has listed
        the directory already."""
        self.entries = {}
        end = plog.log_end_offset
        usable = delete_snapshots(plog.directory, lambda offset: offset <= end, snapshots)
        start = plog.log_start_offset
        for offset in reversed(usable):
            path = snapshot_path(plog.directory, offset)
            try:
                entries = read_snapshot(path)
            except (CorruptSnapshotError, OSError) as exc:
                log.warning("ignoring producer snapshot of %s-%d: %s", plog.topic, plog.partition, exc)
                path.unlink(missing_ok=True)
                continue
            self.load_snapshot(entries)
            start = max(offset, start)
            break
        self.replay(plog, start)

    def take_snapshot(self, directory, end: int) -> None:
        """Write a snapshot at ``end`` (the log end) unless one is there,
        keeping the newest SNAPSHOTS_KEPT."""
        existing = list_snapshots(directory)
        if existing and existing[-1] == end:
            return
        write_snapshot(directory, end, self.to_snapshot())
        offsets = sorted({*existing, end})
        kept = set(offsets[-SNAPSHOTS_KEPT:])
        delete_snapshots(directory, kept.__contains__, offsets)

    def expire(self, older_than_ms: int) -> int:
        gone = [
            pid
            for pid, e in self.entries.items()
            if e.last_seen_ms < older_than_ms and e.current_txn_first_offset is None
        ]
        for pid in gone:
            del self.entries[pid]
        return len(gone)
