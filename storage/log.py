"""The log of one partition: an ordered list of segments, the last active.

Invariants (asserted after every change that moves them):
``log_start_offset <= high_watermark <= log_end_offset``, segments sorted by
base offset and contiguous in offsets, only the active (last) segment grows.

Offsets are assigned here: an appended buffer of batches gets the next
offsets by patching each batch's base offset in place (and its partition
leader epoch, and for LogAppendTime topics its max timestamp), so the bytes
go to disk as they came, validated once.

The log knows the id of the topic it belongs to (``topic_id``, from its
``partition.metadata``, see partition_metadata): given one at open, a log
recording another is refused before anything in its directory is touched
(InconsistentTopicIdError), and a log recording none is given it.

Every append updates the log's producer state (producer_state), whoever
makes it; a leader's append of client batches checks it first
(``append_as_leader``). It is recovered on open (snapshot + replay) and
rebuilt by a truncation.

I/O errors (Kafka's log directory failure): every operation that touches
the files is refused with KafkaStorageError once the log is ``offline``,
and an OSError from one takes the log offline, with the rest of its log
directory (``on_io_error``, set by the LogManager). Nothing is written to
an offline log again in this process; the next start finds no clean
shutdown marker for its directory and recovers it.
"""

from __future__ import annotations

import bisect
import functools
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ..protocol.errors import CorruptRecordError
from ..protocol.record_batch import HEADER_SIZE, RecordBatch, iter_batches
from .config import LogConfig
from .leader_epoch import LeaderEpochCache
from .partition_metadata import InconsistentTopicIdError, read_topic_id, write_topic_id
from .producer_snapshot import SUFFIX as SNAPSHOT_SUFFIX
from .producer_snapshot import delete_snapshots
from .producer_state import ProducerStateManager, transaction_marker
from .segment import INDEX_SUFFIX, LOG_SUFFIX, TIMEINDEX_SUFFIX, BatchInfo, FileRegion, LogSegment
from .txn_index import TXNINDEX_SUFFIX, AbortedTxn

LEADER_EPOCH_FILE = "leader-epoch-checkpoint"
# Suffixes of files a crash may leave behind (Kafka's names).
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
DELETED_SUFFIX = ".deleted"


class KafkaStorageError(OSError):
    """Kafka's KafkaStorageException (KAFKA_STORAGE_ERROR): the log's
    directory is offline. An OSError, so callers that already treat a
    failed write as one keep doing so."""


def _io(method):
    """For operations that touch the log's files (owner thread only):
    refused once the log is offline; an OSError takes it offline."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        if self.offline is not None:
            raise self._offline_error()
        try:
            return method(self, *args, **kwargs)
        except KafkaStorageError:
            raise
        except OSError as exc:
            raise self.io_failed(exc) from exc

    return guarded


class OffsetOutOfRangeError(Exception):
    def __init__(self, offset: int, start: int, end: int):
        super().__init__(f"offset {offset} is outside the log [{start}, {end}]")
        self.offset, self.start, self.end = offset, start, end


class AppendResult(NamedTuple):
    base_offset: int
    last_offset: int
    log_append_time: int  # -1 unless the topic uses LogAppendTime
    max_timestamp: int
    offset_of_max_timestamp: int
    record_count: int
    # A retry of a batch the log holds already: these are its offsets, and
    # nothing was written.
    duplicate: bool = False


class ReadResult(NamedTuple):
    data: bytes | memoryview | FileRegion  # whole batches
    first_offset: int  # base offset of the first batch returned
    segment_base: int


def now_ms() -> int:
    return int(time.time() * 1000)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_partition_dir(name: str) -> tuple[str, int]:
    topic, _, partition = name.rpartition("-")
    if not topic or not partition.isdigit():
        raise ValueError(f"not a partition directory name: {name!r}")
    return topic, int(partition)


class PartitionLog:
    # Why the log's directory failed; None while it is online.
    offline: str | None = None
    # Called (log, cause) by the first I/O error of this log: the LogManager
    # takes the whole directory offline.
    on_io_error: Callable[[PartitionLog, str], None] | None = None

    def __init__(
        self,
        directory: os.PathLike,
        config: LogConfig,
        *,
        recovery_point: int = 0,
        log_start_offset: int = 0,
        high_watermark: int | None = None,
        cleaner_offset: int = 0,
        clean: bool = True,
        topic_id: uuid.UUID | None = None,
    ):
        self.directory = Path(directory)
        self.topic, self.partition = parse_partition_dir(self.directory.name)
        self.config = config
        # Directories whose entries changed since the last flush (new segment
        # files, a new partition directory): fsynced by flush(), or a power
        # loss could drop a file the recovery point already covers.
        self._dirs_to_sync = {self.directory}
        # One mkdir, not a stat and a mkdir: start-up opens every partition.
        try:
            os.mkdir(self.directory)
            self._dirs_to_sync.add(self.directory.parent)
        except FileExistsError:
            pass
        except FileNotFoundError:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._dirs_to_sync.add(self.directory.parent)
        # Checked first: another topic's log is left exactly as it was found
        # (recovery below could cut its tail, or finish its compaction).
        self.topic_id = read_topic_id(self.directory)
        if topic_id is not None and self.topic_id not in (None, topic_id):
            raise InconsistentTopicIdError(self.directory, self.topic_id, topic_id)
        self.segments: list[LogSegment] = []
        self._bases: list[int] = []
        self.recovered_bytes = 0  # bytes cut off by recovery on open
        self.scanned_segments = 0  # segments recovery read batch by batch on open
        # Loaded first: recovery adds the epochs of batches the checkpoint missed.
        self.epochs = LeaderEpochCache(self.directory / LEADER_EPOCH_FILE)
        names = self._load(recovery_point, clean)
        self.log_start_offset = max(log_start_offset, self.segments[0].base_offset)
        self.log_start_offset = min(self.log_start_offset, self.log_end_offset)
        # Never past the checkpoint, clean or not (Kafka's LogLoader): after an
        # unclean stop the recovered tail may sit only in the page cache, and a
        # recovery point past it would let the next unclean start trust it
        # unchecked. The recovered segments are dirty, so a flush moves it.
        self.recovery_point = min(max(recovery_point, 0), self.log_end_offset)
        hw = self.log_end_offset if high_watermark is None else high_watermark
        self.high_watermark = min(max(hw, self.log_start_offset), self.log_end_offset)
        self.epochs.truncate_from_end(self.log_end_offset)
        self.epochs.truncate_from_start(self.log_start_offset)
        self.unflushed_messages = 0
        # Bytes appended since the last fsync (an upper bound: truncations
        # do not lower it); a flusher sizes its fsync by it. The recovered
        # segments are dirty, so they count whole.
        self.unflushed_bytes = sum(seg.size for seg in self.segments if seg.dirty)
        self.last_flush_ms = now_ms()
        # First offset not yet compacted (Kafka's cleaner-offset-checkpoint).
        self.cleaner_offset = min(max(cleaner_offset, self.log_start_offset), self.log_end_offset)
        self._check()
        self.producers = ProducerStateManager()
        stems = (n[: -len(SNAPSHOT_SUFFIX)] for n in names if n.endswith(SNAPSHOT_SUFFIX))
        self._recover_producers(sorted(int(stem) for stem in stems if stem.isdigit()))
        if topic_id is not None:
            self.write_topic_id(topic_id)

    # -- opening -------------------------------------------------------------

    def _load(self, recovery_point: int, clean: bool) -> list[str]:
        """Open the segments; the directory's file names."""
        # One listing per partition: with thousands of partitions, a glob per
        # suffix was most of the start-up time.
        names = self._finish_interrupted_swaps(os.listdir(self.directory))
        bases = sorted(int(n[: -len(LOG_SUFFIX)]) for n in names if n.endswith(LOG_SUFFIX))
        known = set(bases)
        # Index files without a log are leftovers of a deleted segment.
        for suffix in (INDEX_SUFFIX, TIMEINDEX_SUFFIX, TXNINDEX_SUFFIX):
            for n in names:
                if n.endswith(suffix) and int(n[: -len(suffix)]) not in known:
                    os.unlink(self.directory / n)
        present = set(names)
        for i, base in enumerate(bases):
            seg = self._segment(base, present=present)
            self.segments.append(seg)
            next_base = bases[i + 1] if i + 1 < len(bases) else None
            if clean or (next_base is not None and next_base <= recovery_point):
                # Recovers the segment after all if its file has a torn tail.
                cut = seg.load(self.epochs)
            else:
                cut = seg.recover(self.epochs)
                self.scanned_segments += 1
            self.recovered_bytes += cut
            if cut:
                # Everything after a torn batch is unreachable: Kafka drops it.
                for later in bases[i + 1 :]:
                    self._delete_segment_files(later)
                break
        if not self.segments:
            self.segments.append(self._new_segment(0))
        self._bases = [s.base_offset for s in self.segments]
        for prev, seg in zip(self.segments, self.segments[1:]):
            if prev.next_offset > seg.base_offset:
                raise CorruptRecordError(
                    f"{self.directory.name}: segment {prev.base_offset} overlaps {seg.base_offset}"
                )
        return names

    def _finish_interrupted_swaps(self, names: list[str]) -> list[str]:
        """A compaction swap is: write ``.cleaned`` files, rename them to
        ``.swap``, delete the replaced segments, rename ``.swap`` to the final
        names. After a crash, ``.cleaned`` files are incomplete (discard) and
        ``.swap`` files are complete (finish the swap). Takes the directory's
        names and returns them as they are afterwards."""
        kept = []
        for name in names:
            if name.endswith((CLEANED_SUFFIX, DELETED_SUFFIX)):
                os.unlink(self.directory / name)
            else:
                kept.append(name)
        if not any(name.endswith(SWAP_SUFFIX) for name in kept):
            return kept
        swaps = sorted(self.directory.glob(f"*{LOG_SUFFIX}{SWAP_SUFFIX}"))
        for swap in swaps:
            base = int(swap.name.split(".")[0])
            # The real index settings: with a token size the rebuilt time index
            # had no room and recovering the swap raised, so the log never opened.
            seg = self._segment(base, suffix=SWAP_SUFFIX)
            seg.recover()
            last = seg.next_offset
            seg.close()
            # The swap replaces every old segment whose offsets it covers.
            for p in self.directory.glob(f"*{LOG_SUFFIX}"):
                old = int(p.name[: -len(LOG_SUFFIX)])
                if base <= old < last:
                    self._delete_segment_files(old)
            # The .log goes last, so that while any file of the set still
            # carries the suffix, .log.swap does too and a crash here lands
            # back in this branch.
            for suffix in (INDEX_SUFFIX, TIMEINDEX_SUFFIX, TXNINDEX_SUFFIX, LOG_SUFFIX):
                src = self.directory / f"{base:020d}{suffix}{SWAP_SUFFIX}"
                if src.exists():
                    os.replace(src, self.directory / f"{base:020d}{suffix}")
        # Index .swap files without their .log.swap are from a crash while the
        # .cleaned set was being renamed (indexes first): not committed.
        for p in self.directory.glob(f"*{SWAP_SUFFIX}"):
            p.unlink()
        return os.listdir(self.directory)

    def _delete_segment_files(self, base: int) -> None:
        # Unlinked by name: opening a LogSegment just to delete it would build
        # indexes (with a token size the time index could not be opened).
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX, TXNINDEX_SUFFIX):
            (self.directory / f"{base:020d}{suffix}").unlink(missing_ok=True)

    def _new_segment(self, base: int) -> LogSegment:
        self._dirs_to_sync.add(self.directory)
        return self._segment(base)

    def _segment(self, base: int, **options) -> LogSegment:
        """Open a segment of this partition with the topic's index settings."""
        cfg = self.config
        return LogSegment(
            self.directory,
            base,
            index_bytes=cfg.segment_index_bytes,
            index_interval=cfg.index_interval_bytes,
            **options,
        )

    # -- state ---------------------------------------------------------------

    @property
    def active(self) -> LogSegment:
        return self.segments[-1]

    @property
    def log_end_offset(self) -> int:
        return self.segments[-1].next_offset

    @property
    def size_in_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def _check(self) -> None:
        assert self.log_start_offset <= self.high_watermark <= self.log_end_offset, (
            self.log_start_offset,
            self.high_watermark,
            self.log_end_offset,
        )

    # -- failure -------------------------------------------------------------

    def check_online(self) -> None:
        """Raise KafkaStorageError if the log's directory has failed."""
        if self.offline is not None:
            raise self._offline_error()

    def io_failed(self, exc: OSError) -> KafkaStorageError:
        """Take the log (and through ``on_io_error`` its directory) offline
        because of ``exc``; returns the error to raise. Owner thread only."""
        if isinstance(exc, KafkaStorageError):
            return exc
        if self.offline is None:
            cause = str(exc) or type(exc).__name__
            if self.on_io_error is not None:
                self.on_io_error(self, cause)
            if self.offline is None:
                self.offline = cause
        return self._offline_error()

    def _offline_error(self) -> KafkaStorageError:
        return KafkaStorageError(
            f"partition {self.topic}-{self.partition} is in an offline log directory "
            f"({self.directory.parent}: {self.offline})"
        )

    # -- appending -----------------------------------------------------------

    @_io
    def append(
        self,
        records,
        *,
        leader_epoch: int = -1,
        now: int | None = None,
        assign_offsets: bool = True,
        validate: bool = True,
    ) -> AppendResult:
        """Append one or more batches. With ``assign_offsets`` the batches get
        the next offsets; without (replication, compaction) their offsets must
        continue the log. Raises CorruptRecordError before writing anything if
        any batch is malformed."""
        view = memoryview(records)
        if view.readonly:
            view = memoryview(bytearray(view))
        batches = list(iter_batches(view))
        if not batches:
            raise CorruptRecordError("no record batch in the appended data")
        if validate:
            for batch in batches:
                batch.validate()
        return self._append(batches, view, leader_epoch, now, assign_offsets)

    @_io
    def append_as_leader(
        self, batches: list[RecordBatch], *, leader_epoch: int = -1, now: int | None = None
    ) -> AppendResult:
        """A leader's append of client batches the caller has split and
        validated: their producers' epochs and sequences are checked first
        (ProducerStateError when refused); a retry of a batch the log holds is not
        written again, its original offsets come back (``duplicate``)."""
        if not batches:
            raise CorruptRecordError("no record batch in the appended data")
        for batch in batches:
            if batch.is_control and batch.producer_id >= 0:
                marker = transaction_marker(batch)
                if marker is not None:
                    self.producers.check_marker(batch.producer_id, batch.producer_epoch, marker.coordinator_epoch)
        dup = self.producers.check_batches(batches)
        if dup is not None:
            return AppendResult(dup.base_offset, dup.last_offset, -1, -1, dup.last_offset, 0, True)
        return self._append(batches, None, leader_epoch, now, True)

    def append_as_follower(self, records, *, now: int | None = None) -> AppendResult:
        """A follower's append of its leader's batches, offsets and epochs
        already assigned: written as they are, producer state updated
        without the leader's checks."""
        return self.append(records, now=now, assign_offsets=False)

    @_io
    def append_batches(
        self, batches: list[RecordBatch], *, leader_epoch: int = -1, now: int | None = None
    ) -> AppendResult:
        """Append batches the caller has already split and validated (the
        produce path checks each header once), giving them the next offsets.
        They must view writable bytes: offsets are patched in place."""
        if not batches:
            raise CorruptRecordError("no record batch in the appended data")
        return self._append(batches, None, leader_epoch, now, True)

    def _append(
        self, batches: list[RecordBatch], data, leader_epoch: int, now: int | None, assign_offsets: bool
    ) -> AppendResult:
        """``data`` holds exactly the batches, in order (None: join them)."""
        now = now_ms() if now is None else now
        for batch in batches:
            # Not covered by the CRC check: a last offset below the base would
            # move the log end backwards and hand out offsets again.
            if batch.last_offset_delta < 0:
                raise CorruptRecordError(f"batch has a negative last offset delta {batch.last_offset_delta}")
        # Read before anything is written: a marker that cannot be read
        # refuses the append instead of leaving the producer state behind it.
        markers = {id(b): transaction_marker(b) for b in batches if b.is_control and b.producer_id >= 0}
        next_offset = self.log_end_offset
        append_time = now if self.config.log_append_time else -1
        infos = []
        max_ts, max_ts_offset, count = -1, next_offset, 0
        position = 0
        for batch in batches:
            if assign_offsets:
                batch.set_base_offset(next_offset)
                if leader_epoch >= 0:
                    batch.set_partition_leader_epoch(leader_epoch)
                if append_time >= 0:
                    batch.set_log_append_time(append_time)
            elif batch.base_offset < next_offset:
                raise CorruptRecordError(f"batch at offset {batch.base_offset} is below the log end {next_offset}")
            last = batch.last_offset
            ts = batch.max_timestamp
            size = batch.size_in_bytes
            infos.append(BatchInfo(position, batch.base_offset, last, size, ts))
            if ts > max_ts:
                max_ts, max_ts_offset = ts, last
            count += batch.record_count
            position += size
            next_offset = last + 1
        if data is None:
            # One batch (a Produce partition) goes out as the view it came in.
            data = batches[0].view if len(batches) == 1 else b"".join(b.view for b in batches)
        first_base = infos[0].base_offset
        self._maybe_roll(position, infos[-1].last_offset, now, first_base, max_ts)
        self.active.append(data, infos)
        producers = self.producers
        for batch in batches:
            if batch.producer_id >= 0:
                if batch.is_control:
                    self._end_transaction(batch, markers[id(batch)])
                else:
                    producers.appended(batch, now)
        if assign_offsets:
            if leader_epoch >= 0:
                self.epochs.assign(leader_epoch, first_base)
        else:
            for batch in batches:
                if batch.partition_leader_epoch >= 0:
                    self.epochs.assign(batch.partition_leader_epoch, batch.base_offset)
        self.unflushed_messages += count
        self.unflushed_bytes += len(data)
        if self.unflushed_messages >= self.config.flush_messages:
            self.flush()
        return AppendResult(first_base, infos[-1].last_offset, append_time, max_ts, max_ts_offset, count)

    def _end_transaction(self, batch: RecordBatch, marker) -> None:
        """A transaction marker just written: its producer's transaction is
        over, and an abort goes into the index of the segment holding it."""
        if marker is None:
            return
        txn, lso = self.producers.complete(
            batch.producer_id,
            batch.producer_epoch,
            marker.commit,
            marker.coordinator_epoch,
            batch.base_offset,
            batch.max_timestamp,
        )
        if txn.aborted:
            self.active.txn_index.append(AbortedTxn(txn.producer_id, txn.first_offset, txn.last_offset, lso))

    def _maybe_roll(self, size: int, last_offset: int, now: int, next_base: int, max_timestamp: int) -> None:
        seg = self.active
        cfg = self.config
        roll_ms = cfg.segment_ms - cfg.roll_jitter_ms(seg.base_offset)
        if seg.can_hold(size, last_offset, cfg.segment_bytes) and not seg.is_due_to_roll(now, roll_ms, max_timestamp):
            return
        self.roll(next_base)

    @_io
    def roll(self, base: int | None = None) -> LogSegment:
        """Start a new active segment at ``base`` (default: the log end)."""
        base = self.log_end_offset if base is None else base
        old = self.active
        if old.size == 0 and old.base_offset == base:
            return old
        old.on_roll()
        seg = self._new_segment(base)
        self.segments.append(seg)
        self._bases.append(base)
        return seg

    # -- reading -------------------------------------------------------------

    @_io
    def read(self, offset: int, max_bytes: int, max_offset: int | None = None, as_region: bool = False) -> ReadResult:
        """Whole batches from the one holding ``offset``; never past
        ``max_offset`` (default: the high watermark). An offset outside
        [log start, log end] raises OffsetOutOfRangeError. With ``as_region``
        the batches come as a FileRegion, to be sent from the file."""
        end = self.log_end_offset
        if offset < self.log_start_offset or offset > end:
            raise OffsetOutOfRangeError(offset, self.log_start_offset, end)
        limit = self.high_watermark if max_offset is None else max_offset
        segments = self.segments
        # Indexes, not a slice: a Fetch reads here once per partition, and
        # a slice copies the list of segments each time.
        for i in range(max(bisect.bisect_right(self._bases, offset) - 1, 0), len(segments)):
            seg = segments[i]
            if seg.base_offset >= limit:
                break
            found = seg.read(offset, max_bytes, limit, as_region)
            if found is not None:
                return ReadResult(found[1], found[0].base_offset, seg.base_offset)
        return ReadResult(b"", offset, self.active.base_offset)

    def aborted_transactions(self, fetch_offset: int, upper_bound: int) -> list[AbortedTxn]:
        """The aborted transactions with data in [fetch_offset, upper_bound),
        for a read_committed reader: from the segment holding
        ``fetch_offset`` on, until an entry shows that no transaction open
        at ``upper_bound`` can be missing (Kafka's collectAbortedTransactions)."""
        found: list[AbortedTxn] = []
        segments = self.segments
        for i in range(max(bisect.bisect_right(self._bases, fetch_offset) - 1, 0), len(segments)):
            index = segments[i].txn_index
            if not len(index):
                continue
            search = index.collect(fetch_offset, upper_bound)
            found += search.aborted
            if search.complete:
                break
        return found

    @_io
    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(timestamp, offset) of the first record whose timestamp is >=
        ``timestamp``, as ListOffsets answers; None if there is none."""
        for seg in self.segments:
            if seg.max_timestamp < timestamp:
                continue
            first = seg.find_timestamp(timestamp)
            if first is None:
                continue
            # Go on past the first candidate batch: its matching records may
            # all lie below the log start (DeleteRecords inside a segment),
            # and a later batch of the same segment may still match.
            for info in seg.scan_headers(first.position):
                if info.max_timestamp < timestamp or info.last_offset < self.log_start_offset:
                    continue
                batch = RecordBatch(memoryview(seg.read_at(info.position, info.size)))
                for rec in batch.records():
                    if rec.timestamp >= timestamp and rec.offset >= self.log_start_offset:
                        return rec.timestamp, rec.offset
        return None

    @_io
    def max_timestamp(self) -> tuple[int, int]:
        """(max timestamp, offset of the record that has it) over the log
        (ListOffsets -3, KIP-734); (-1, -1) for an empty log."""
        best = None
        for seg in self.segments:
            if seg.size and (best is None or seg.max_timestamp > best.max_timestamp):
                best = seg
        if best is None or best.max_timestamp < 0:
            return -1, -1
        info = best.find(best.offset_of_max_timestamp)
        batch = RecordBatch(memoryview(best.read_at(info.position, info.size)))
        for rec in batch.records():
            if rec.timestamp == best.max_timestamp:
                return rec.timestamp, rec.offset
        return best.max_timestamp, best.offset_of_max_timestamp

    # -- producer state ------------------------------------------------------

    def _recover_producers(self, snapshots: list[int] | None = None) -> None:
        """Rebuild the producer state from the log (a snapshot and the
        batches after it), and with it the aborted-transaction index of
        every segment recovery emptied."""
        stale = [seg.base_offset for seg in self.segments if seg.txn_index_stale]
        self.producers.recover(self, snapshots, min(stale, default=None), self._index_abort)
        for seg in self.segments:
            seg.txn_index_stale = False
        self.producers.on_high_watermark(self.high_watermark)

    @staticmethod
    def _index_abort(seg: LogSegment, txn, last_stable_offset: int) -> None:
        """An abort the replay met: indexed unless its segment has it already."""
        if txn.last_offset > seg.txn_index.last_offset:
            seg.txn_index.append(AbortedTxn(txn.producer_id, txn.first_offset, txn.last_offset, last_stable_offset))

    @_io
    def take_producer_snapshot(self) -> None:
        """Snapshot the producer state at the log end (checkpoints, a clean stop)."""
        self.producers.take_snapshot(self.directory, self.log_end_offset)

    def expire_producers(self, older_than_ms: int) -> int:
        return self.producers.expire(older_than_ms)

    # -- moving the ends -----------------------------------------------------

    def set_high_watermark(self, offset: int) -> None:
        self.high_watermark = min(max(offset, self.log_start_offset), self.log_end_offset)
        self.producers.on_high_watermark(self.high_watermark)
        self._check()

    @property
    def last_stable_offset(self) -> int:
        """What a read_committed reader may read up to: the high watermark,
        or the first offset of a transaction still undecided there."""
        first = self.producers.first_unstable_offset()
        return self.high_watermark if first is None else min(first, self.high_watermark)

    @_io
    def truncate_to(self, offset: int) -> None:
        """Remove everything at or after ``offset`` (replica divergence).

        Past the log end nothing is cut but the epoch cache: an entry at
        the log end is an epoch this replica started as leader without
        writing anything, which a follower must not report as the epoch of
        its last batch (Kafka's UnifiedLog.truncateTo does the same)."""
        if offset >= self.log_end_offset:
            self.epochs.truncate_from_end(self.log_end_offset)
            return
        offset = max(offset, self.log_start_offset)
        while len(self.segments) > 1 and self.active.base_offset >= offset:
            self.segments.pop().delete()
            self._bases.pop()
        self.active.truncate_to(offset)
        self.epochs.truncate_from_end(self.log_end_offset)
        self.recovery_point = min(self.recovery_point, self.log_end_offset)
        self.high_watermark = min(self.high_watermark, self.log_end_offset)
        self.log_start_offset = min(self.log_start_offset, self.log_end_offset)
        # Offsets written again after the truncation are not clean yet
        # (Kafka's LogCleanerManager.maybeTruncateCheckpoint).
        self.cleaner_offset = min(self.cleaner_offset, self.log_end_offset)
        # The removed batches' producers go back to what the log now holds.
        self._recover_producers()
        self._check()

    @_io
    def truncate_fully(self, new_start: int) -> None:
        """Drop every segment and restart empty at ``new_start``."""
        for seg in self.segments:
            seg.delete()
        self.segments = [self._new_segment(new_start)]
        self._bases = [new_start]
        self.log_start_offset = self.high_watermark = self.recovery_point = new_start
        self.cleaner_offset = new_start
        self.epochs.clear()
        delete_snapshots(self.directory, lambda offset: False)
        self.producers.clear()
        self._check()

    @_io
    def delete_records(self, offset: int) -> int:
        """Advance the log start offset to ``offset`` (DeleteRecords); it may
        not pass the high watermark. Returns the new log start offset."""
        if offset > self.high_watermark:
            raise OffsetOutOfRangeError(offset, self.log_start_offset, self.high_watermark)
        if offset > self.log_start_offset:
            self.log_start_offset = offset
            self.epochs.truncate_from_start(offset)
            self.delete_segments_below_start()
        self._check()
        return self.log_start_offset

    @_io
    def advance_log_start(self, offset: int) -> int:
        """A follower's log start following its leader's: moved up to
        ``offset`` but never past the log end, the high watermark dragged
        along (the leader's log start is below the leader's high
        watermark, which this replica may not know yet); segments wholly
        below it are deleted. Returns the log start."""
        offset = min(offset, self.log_end_offset)
        if offset > self.log_start_offset:
            self.log_start_offset = offset
            self.high_watermark = max(self.high_watermark, offset)
            self.epochs.truncate_from_start(offset)
            self.cleaner_offset = max(self.cleaner_offset, offset)
            self.delete_segments_below_start()
        self._check()
        return self.log_start_offset

    @_io
    def last_batch_epoch(self) -> int:
        """The leader epoch stamped in the last batch of the log, -1 when
        the log is empty: what a follower reports when its epoch cache
        knows nothing (a checkpoint lost under a clean shutdown)."""
        for seg in reversed(self.segments):
            if seg.size and seg.next_offset > self.log_start_offset:
                info = seg.find(seg.next_offset - 1)
                if info is not None:
                    return RecordBatch(memoryview(seg.read_at(info.position, HEADER_SIZE))).partition_leader_epoch
        return -1

    @_io
    def delete_segments_below_start(self) -> list[int]:
        """Delete the segments that hold only offsets below the log start."""
        gone = []
        while len(self.segments) > 1 and self.segments[1].base_offset <= self.log_start_offset:
            gone.append(self._delete_oldest())
        return gone

    def _delete_oldest(self) -> int:
        seg = self.segments.pop(0)
        self._bases.pop(0)
        seg.delete()
        if self.segments[0].base_offset > self.log_start_offset:
            # Retention moved the start: keep the epoch cache and the cleaner
            # offset within the log, as delete_records and reopening do.
            self.log_start_offset = self.segments[0].base_offset
            self.epochs.truncate_from_start(self.log_start_offset)
            self.cleaner_offset = max(self.cleaner_offset, self.log_start_offset)
        return seg.base_offset

    @_io
    def delete_expired_segments(self, now: int | None = None) -> list[int]:
        """Retention (``cleanup.policy`` containing ``delete``): delete whole
        old segments by ``retention.ms`` and ``retention.bytes``, oldest first,
        never the active one and never one holding offsets at or past the high
        watermark. Returns the base offsets deleted."""
        now = now_ms() if now is None else now
        gone = self.delete_segments_below_start()
        if not self.config.delete:
            return gone
        cfg = self.config
        total = self.size_in_bytes
        while len(self.segments) > 1:
            seg = self.segments[0]
            # The next segment's base becomes the log start, so it is what may
            # not pass the high watermark (Kafka's upper bound); the segment's
            # own end can be lower when offsets have a gap (compaction,
            # replicated appends).
            if self.segments[1].base_offset > self.high_watermark:
                break
            too_old = cfg.retention_ms >= 0 and seg.size and now - self._segment_time(seg) > cfg.retention_ms
            too_big = cfg.retention_bytes >= 0 and total - seg.size >= cfg.retention_bytes
            if not (too_old or too_big):
                break
            total -= seg.size
            gone.append(self._delete_oldest())
        self._check()
        return gone

    @staticmethod
    def _segment_time(seg: LogSegment) -> int:
        # Kafka falls back to the file's mtime when batches carry no timestamps.
        if seg.max_timestamp >= 0:
            return seg.max_timestamp
        return int(os.stat(seg.path).st_mtime * 1000)

    # -- compaction swap -------------------------------------------------------

    def new_cleaned_segment(self, base: int) -> LogSegment:
        """A segment under construction, named ``*.cleaned`` until swapped in.
        Not guarded like the other file operations: the cleaner calls it
        from a worker thread, and its caller hands an OSError to
        ``io_failed`` back on the owner thread."""
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX, TXNINDEX_SUFFIX):
            stale = self.directory / f"{base:020d}{suffix}{CLEANED_SUFFIX}"
            if stale.exists():
                stale.unlink()
        return self._segment(base, suffix=CLEANED_SUFFIX)

    @_io
    def replace_segments(self, old: list[LogSegment], new: LogSegment) -> None:
        """Swap a cleaned segment in for the closed segments it was built
        from, crash-safely: fsync it, rename it ``.swap`` (the commit point:
        from here recovery finishes the swap), delete the old ones, drop the
        suffix. Must run on the thread that owns the log."""
        assert old and all(seg in self.segments[:-1] for seg in old), "only closed segments are replaced"
        assert new.base_offset == old[0].base_offset
        new.on_roll()
        new.dirty = True
        new.flush()
        new.rename_suffix(CLEANED_SUFFIX, SWAP_SUFFIX)
        _fsync_dir(self.directory)
        first = self.segments.index(old[0])
        for seg in old:
            seg.delete()
        new.rename_suffix(SWAP_SUFFIX, "")
        _fsync_dir(self.directory)
        new.next_offset = max(new.next_offset, old[-1].next_offset)
        self.segments[first : first + len(old)] = [new]
        self._bases = [s.base_offset for s in self.segments]

    # -- the topic -----------------------------------------------------------

    @_io
    def write_topic_id(self, topic_id: uuid.UUID) -> None:
        """Record the id of the topic this log belongs to; once: another id
        later is an InconsistentTopicIdError."""
        if self.topic_id == topic_id:
            return
        if self.topic_id is not None:
            raise InconsistentTopicIdError(self.directory, self.topic_id, topic_id)
        # A new log's directory is not durable in its parent before the first
        # flush, so neither is anything in it: that flush syncs both, as it
        # does for the first segment's files.
        new = self.directory.parent in self._dirs_to_sync
        write_topic_id(self.directory, topic_id, sync_dir=not new)
        if new:
            self._dirs_to_sync.add(self.directory)
        self.topic_id = topic_id

    # -- durability ----------------------------------------------------------

    @_io
    def flush(self) -> bool:
        """fsync everything appended so far; False if nothing was dirty."""
        dirty = [s for s in self.segments if s.dirty]
        for seg in dirty:
            seg.flush()
        while self._dirs_to_sync:
            _fsync_dir(self._dirs_to_sync.pop())
        self.recovery_point = self.log_end_offset
        self.unflushed_messages = 0
        self.unflushed_bytes = 0
        self.last_flush_ms = now_ms()
        return bool(dirty)

    def needs_flush(self, now: int | None = None) -> bool:
        """Kafka's ``flush.messages`` / ``flush.ms`` policy."""
        if not any(s.dirty for s in self.segments[-2:]):
            return False
        now = now_ms() if now is None else now
        return self.unflushed_messages >= self.config.flush_messages or now - self.last_flush_ms >= self.config.flush_ms

    def close(self, trim: bool = True) -> None:
        """Release every segment; without ``trim`` nothing is written (a
        failed directory). Every segment is closed even if one fails."""
        error = None
        for seg in self.segments:
            try:
                seg.close(trim)
            except OSError as exc:
                error = error or exc
        if error is not None:
            raise error

    def delete(self) -> None:
        """Remove the partition's files and directory."""
        self.close(trim=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.topic}-{self.partition}, start={self.log_start_offset}, "
            f"hw={self.high_watermark}, end={self.log_end_offset}, segments={len(self.segments)})"
        )
