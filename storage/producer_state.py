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

from ..protocol.errors import CorruptRecordError
from ..protocol.record_batch import CONTROL_BIT, HEADER, HEADER_SIZE, TRANSACTIONAL_BIT, RecordBatch
from ..protocol.records import ControlType, EndTxnMarker, control_type, read_end_txn_marker
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


class CoordinatorFenced(ProducerStateError):
    error = "TRANSACTION_COORDINATOR_FENCED"


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
    # First offset of the producer's open transaction; None while it has none.
    current_txn_first_offset: int | None = None
    # Epoch of the transaction coordinator that wrote its last marker.
    coordinator_epoch: int = -1

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1


@dataclass(frozen=True, slots=True)
class CompletedTxn:
    """A transaction its marker ended: from its first batch to the marker."""

    producer_id: int
    first_offset: int
    last_offset: int  # the marker's
    aborted: bool


def next_seq(seq: int) -> int:
    return 0 if seq == INT32_MAX else seq + 1


class ProducerStateManager:
    """The producer state of one partition log."""

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        """Forget every producer (the log was emptied)."""
        self.entries: dict[int, ProducerEntry] = {}
        # Open transactions: producer id -> first offset, in offset order
        # (batches are appended in offset order; loads sort).
        self.ongoing: dict[int, int] = {}
        # Ended transactions whose marker is not below the high watermark
        # yet: still unstable to a read_committed reader, as in Kafka.
        self.unreplicated: list[CompletedTxn] = []

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
        if first_seq < 0:
            # A coordinator's batch (a transactional offset commit) has no
            # sequence: only its epoch is checked, as Kafka checks it.
            return None
        if epoch > entry.epoch:
            if first_seq != 0:
                raise OutOfOrderSequence(f"producer {producer_id} started epoch {epoch} at sequence {first_seq}, not 0")
            return None
        if not entry.batches:
            # Only a transaction marker leaves an entry without batches: it
            # bumped the epoch (an abort that fenced), so sequences restart.
            if first_seq != 0:
                raise OutOfOrderSequence(
                    f"producer {producer_id} sent sequence {first_seq} after a marker bumped its epoch, not 0"
                )
            return None
        for meta in entry.batches:
            if meta.first_seq == first_seq and meta.last_seq == last_seq:
                return meta
        if first_seq != next_seq(entry.last_seq):
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

    def update(self, producer_id: int, epoch: int, meta: BatchMeta, now: int) -> ProducerEntry:
        entry = self._entry(producer_id, epoch)
        entry.batches.append(meta)
        # Kafka's lastTimestamp is the batch's max timestamp, not the time of
        # the append: snapshots store it and expiry measures from it.
        entry.last_seen_ms = meta.timestamp if meta.timestamp >= 0 else now
        return entry

    def _entry(self, producer_id: int, epoch: int) -> ProducerEntry:
        """The producer's entry at ``epoch``: a new epoch forgets the batches
        (sequences restart) but not the open transaction or the coordinator."""
        entry = self.entries.get(producer_id)
        if entry is None:
            entry = self.entries[producer_id] = ProducerEntry(epoch)
        elif epoch != entry.epoch:
            entry = self.entries[producer_id] = ProducerEntry(
                epoch,
                last_seen_ms=entry.last_seen_ms,
                current_txn_first_offset=entry.current_txn_first_offset,
                coordinator_epoch=entry.coordinator_epoch,
            )
        return entry

    def appended(self, batch, now: int) -> None:
        """Record a data batch just written (offsets assigned), whoever
        wrote it; markers go through ``complete``."""
        pid = batch.producer_id
        if pid < 0 or batch.is_control:
            return
        meta = BatchMeta(
            batch.base_sequence, batch.last_sequence, batch.base_offset, batch.last_offset, batch.max_timestamp
        )
        entry = self.update(pid, batch.producer_epoch, meta, now)
        if batch.is_transactional:
            self._begin(pid, entry, batch.base_offset)

    def _begin(self, pid: int, entry: ProducerEntry, offset: int) -> None:
        if entry.current_txn_first_offset is None:
            entry.current_txn_first_offset = offset
            self.ongoing[pid] = offset

    # -- transactions ---------------------------------------------------------

    def check_marker(self, producer_id: int, epoch: int, coordinator_epoch: int) -> None:
        """Check a marker a coordinator asks this leader to write: refused
        from a coordinator older than the last one heard from (a zombie
        coordinator) or for an epoch older than the producer's."""
        entry = self.entries.get(producer_id)
        if entry is None:
            return
        if coordinator_epoch < entry.coordinator_epoch:
            raise CoordinatorFenced(
                f"marker of coordinator epoch {coordinator_epoch} for producer {producer_id}, "
                f"which heard from coordinator epoch {entry.coordinator_epoch}"
            )
        if epoch < entry.epoch:
            raise ProducerFenced(f"marker for producer {producer_id} epoch {epoch}, older than {entry.epoch}")

    def complete(
        self, producer_id: int, epoch: int, commit: bool, coordinator_epoch: int, offset: int, timestamp: int
    ) -> tuple[CompletedTxn, int]:
        """A marker written at ``offset`` ends the producer's transaction
        (a marker without one ends an empty transaction at itself): the
        transaction, and the last stable offset once it is out of the open
        ones (what an aborted transaction's index entry records)."""
        entry = self._entry(producer_id, epoch)
        first = entry.current_txn_first_offset
        txn = CompletedTxn(producer_id, offset if first is None else first, offset, not commit)
        entry.current_txn_first_offset = None
        entry.coordinator_epoch = coordinator_epoch
        if timestamp >= 0:
            entry.last_seen_ms = timestamp
        self.ongoing.pop(producer_id, None)
        self.unreplicated.append(txn)
        return txn, next(iter(self.ongoing.values()), offset + 1)

    def on_high_watermark(self, high_watermark: int) -> None:
        """Ended transactions whose marker the high watermark passed are stable."""
        if self.unreplicated and self.unreplicated[0].last_offset < high_watermark:
            self.unreplicated = [t for t in self.unreplicated if t.last_offset >= high_watermark]

    def first_unstable_offset(self) -> int | None:
        """The first offset a read_committed reader may not pass (None: none)."""
        first = next(iter(self.ongoing.values()), None)
        for txn in self.unreplicated:
            if first is None or txn.first_offset < first:
                first = txn.first_offset
        return first

    def last_offsets(self) -> dict[int, int]:
        """{producer id: offset of its last batch}: what compaction keeps."""
        return {pid: e.batches[-1].last_offset for pid, e in self.entries.items() if e.batches}

    # -- snapshots and recovery ------------------------------------------------

    def to_snapshot(self) -> list[SnapshotEntry]:
        out = []
        for pid, entry in self.entries.items():
            txn_first = -1 if entry.current_txn_first_offset is None else entry.current_txn_first_offset
            if entry.batches:
                last = entry.batches[-1]
                seq, offset, delta = last.last_seq, last.last_offset, last.last_offset - last.base_offset
            else:
                seq, offset, delta = -1, -1, 0  # Kafka's empty entry: only a marker was seen
            out.append(
                SnapshotEntry(
                    pid, entry.epoch, seq, offset, delta, entry.last_seen_ms, entry.coordinator_epoch, txn_first
                )
            )
        return out

    def load_snapshot(self, entries: list[SnapshotEntry]) -> None:
        for e in entries:
            if e.last_offset >= 0:
                first_seq = (e.last_sequence - e.offset_delta) % (INT32_MAX + 1) if e.last_sequence >= 0 else -1
                meta = BatchMeta(first_seq, e.last_sequence, e.last_offset - e.offset_delta, e.last_offset, e.timestamp)
                entry = self.update(e.producer_id, e.epoch, meta, e.timestamp)
            else:
                entry = self.entries[e.producer_id] = ProducerEntry(e.epoch, last_seen_ms=e.timestamp)
            entry.coordinator_epoch = e.coordinator_epoch
            if e.txn_first_offset >= 0:
                entry.current_txn_first_offset = e.txn_first_offset
        open_txns = sorted(
            (e.current_txn_first_offset, pid)
            for pid, e in self.entries.items()
            if e.current_txn_first_offset is not None
        )
        self.ongoing = {pid: first for first, pid in open_txns}

    def replay(self, plog, start: int, on_abort=None) -> int:
        """Rebuild from the batch headers of ``plog`` at offsets >= ``start``
        (and the records of its transaction markers); ``on_abort(segment,
        txn, last stable offset)`` hears of every aborted transaction."""
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
                if producer_id < 0:
                    continue
                if attributes & CONTROL_BIT:
                    marker = _marker(seg, info)
                    if marker is not None:
                        txn, lso = self.complete(
                            producer_id, epoch, marker.commit, marker.coordinator_epoch, info.base_offset, h[8]
                        )
                        if txn.aborted and on_abort is not None:
                            on_abort(seg, txn, lso)
                    continue
                last_seq = (base_seq + h[6]) % (INT32_MAX + 1)
                entry = self.update(
                    producer_id, epoch, BatchMeta(base_seq, last_seq, info.base_offset, info.last_offset, h[8]), h[8]
                )
                if attributes & TRANSACTIONAL_BIT:
                    self._begin(producer_id, entry, info.base_offset)
                n += 1
        return n

    def recover(self, plog, snapshots: list[int] | None = None, replay_from: int | None = None, on_abort=None) -> None:
        """Rebuild from scratch: the newest usable snapshot (at or below the
        log end; the others are deleted), then the headers after it.
        ``snapshots`` are the snapshot offsets when the caller has listed
        the directory already. With ``replay_from`` the replay starts there
        or before (from a snapshot no later than it), so that ``on_abort``
        (see ``replay``) hears of every transaction aborted from there on."""
        self.clear()
        end = plog.log_end_offset
        usable = delete_snapshots(plog.directory, lambda offset: offset <= end, snapshots)
        start = plog.log_start_offset
        if replay_from is not None:
            usable = [offset for offset in usable if offset <= replay_from]
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
        self.replay(plog, start, on_abort)

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


def transaction_marker(batch) -> EndTxnMarker | None:
    """The commit or abort marker a control batch carries (None: a control
    record of another kind, which ends no transaction). Raises
    CorruptRecordError when the record cannot be read."""
    record = next(batch.records(), None)
    if record is None or control_type(record) not in (ControlType.ABORT, ControlType.COMMIT):
        return None
    return read_end_txn_marker(record)


def _marker(seg, info) -> EndTxnMarker | None:
    """The marker of a control batch in the log (None: not a marker, or one
    that cannot be read, which is logged and skipped)."""
    try:
        return transaction_marker(RecordBatch(seg.read_at(info.position, info.size)))
    except CorruptRecordError as exc:
        log.warning("%s: control batch at offset %d unreadable: %s", seg.path, info.base_offset, exc)
        return None
