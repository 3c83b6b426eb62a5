"""One log segment: a ``.log`` file of record batches with its two indexes.

The segment stores batches exactly as they were appended (offsets already
assigned by the log) and never looks inside them beyond the 61-byte batch
header. Positions are byte offsets in the ``.log`` file.

Index entries follow Kafka: after more than ``index.interval.bytes`` have
been appended since the last entry, the next batch gets an offset-index
entry (its last offset -> its position) and the time index gets the largest
timestamp seen so far with the offset where it occurred.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from pathlib import Path
from typing import NamedTuple

from ..protocol.errors import ProtocolError
from ..protocol.record_batch import HEADER, HEADER_SIZE, LOG_OVERHEAD, MIN_BATCH_LENGTH, RecordBatch
from .index import CorruptIndexError, OffsetIndex, TimeIndex
from .txn_index import TXNINDEX_SUFFIX, TransactionIndex

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"
# Batches larger than this are corruption, not data (Kafka caps batches at
# max.message.bytes, whose largest sane value is far below this).
MAX_BATCH_SIZE = 1 << 30
_BASE_AND_LENGTH = struct.Struct(">qi")  # the first two fields of a batch
# What LogSegment._account moves: restored when an append fails.
_ACCOUNTING = (
    "next_offset",
    "_tail",
    "max_timestamp",
    "offset_of_max_timestamp",
    "first_batch_timestamp",
    "_since_index",
)


def file_stem(base_offset: int) -> str:
    return f"{base_offset:020d}"


class BatchInfo(NamedTuple):
    """Header facts of one stored batch (a tuple: one is built per batch
    appended, and a frozen dataclass costs several times as much)."""

    position: int
    base_offset: int
    last_offset: int
    size: int
    max_timestamp: int


class SegmentFile:
    """A segment's open ``.log`` file, shared by the segment and by the file
    regions read from it that still wait to be sent. The descriptor closes
    when the last of them lets go, so retention, DeleteRecords or a
    compaction swap may delete the segment while a response still sends
    from it. ``truncations`` counts cuts of the file: after one, a region
    read before it no longer holds the batches it was read as."""

    __slots__ = ("fd", "truncations")

    def __init__(self, fd: int):
        self.fd = fd
        self.truncations = 0

    def __del__(self):
        try:
            os.close(self.fd)
        except OSError:
            pass


class RegionGoneError(Exception):
    """The segment file was cut after a region of it was read."""


class FileRegion:
    """``length`` bytes of a segment file from ``position``, to be sent from
    the file (``os.sendfile``) rather than read into memory. ``len()`` is
    the size, so a response carries a region as it carries any large blob."""

    __slots__ = ("_truncations", "file", "length", "position")

    def __init__(self, file: SegmentFile, position: int, length: int):
        self.file = file
        self.position = position
        self.length = length
        self._truncations = file.truncations

    def __len__(self) -> int:
        return self.length

    def fileno(self) -> int:
        """The descriptor to send from; RegionGoneError if the file was cut."""
        if self.file.truncations != self._truncations:
            raise RegionGoneError(f"segment file cut after {self.length} bytes at {self.position} were read")
        return self.file.fd

    def read(self, skip: int = 0) -> bytes:
        """The region's bytes after the first ``skip`` (where sendfile cannot be used)."""
        want = self.length - skip
        data = os.pread(self.fileno(), want, self.position + skip)
        if len(data) != want:
            raise RegionGoneError(f"segment file ends inside a region read from it at {self.position}")
        return data

    def __repr__(self) -> str:
        return f"FileRegion(fd={self.file.fd}, position={self.position}, length={self.length})"


class LogSegment:
    def __init__(
        self,
        directory: Path,
        base_offset: int,
        *,
        index_bytes: int,
        index_interval: int,
        suffix: str = "",
        present: set[str] | None = None,
    ):
        """``present``: the names in ``directory``, when the caller has
        listed it already (no stat per index file then)."""
        self.directory = Path(directory)
        self.base_offset = base_offset
        self.index_interval = index_interval
        stem = directory / file_stem(base_offset)
        self.path = Path(f"{stem}{LOG_SUFFIX}{suffix}")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._file: SegmentFile | None = SegmentFile(self._fd)
        self.size = os.fstat(self._fd).st_size
        # End of the last whole batch: what reads may return up to. Only a
        # torn tail that recovery has not cut yet lies between it and size.
        self._tail = 0
        index_path = Path(f"{stem}{INDEX_SUFFIX}{suffix}")
        time_index_path = Path(f"{stem}{TIMEINDEX_SUFFIX}{suffix}")
        # A data file whose index went missing must have it rebuilt on load:
        # an empty index passes the sanity check, and every lookup would then
        # scan the segment from its first byte (Kafka recovers such a segment).
        if present is None:
            indexed = index_path.exists() and time_index_path.exists()
        else:
            indexed = index_path.name in present and time_index_path.name in present
        self._indexes_missing = bool(self.size) and not indexed
        self.offset_index = OffsetIndex(index_path, base_offset, index_bytes)
        self.time_index = TimeIndex(time_index_path, base_offset, index_bytes)
        txn_path = Path(f"{stem}{TXNINDEX_SUFFIX}{suffix}")
        self.txn_index = TransactionIndex(txn_path, base_offset, present is None or txn_path.name in present)
        self.created_ms = int(time.time() * 1000)
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self.first_batch_timestamp: int | None = None
        self._since_index = 0
        self.dirty = False
        # Set by recover(): the aborted-transaction index awaits the log's rebuild.
        self.txn_index_stale = False

    # -- loading -------------------------------------------------------------

    def load(self, epochs=None) -> int:
        """Open an existing segment after a clean shutdown: trust the indexes
        if they pass the sanity check, and scan only the batch headers after
        the last index entry. The segment is recovered instead (see
        ``recover``, which gets ``epochs``) when an index is missing or
        corrupt, or when the file does not end where its last whole batch
        ends: a torn write that no recovery has cut yet, which appends would
        otherwise bury. Returns the bytes cut off."""
        if self._indexes_missing:
            return self.recover(epochs)
        try:
            self.offset_index.sanity_check(self.size)
            self.time_index.sanity_check()
            self.txn_index.sanity_check()
        except CorruptIndexError:
            return self.recover(epochs)
        first = next(self.scan_headers(0), None)
        self.first_batch_timestamp = first.max_timestamp if first else None
        _, position = self.offset_index.lookup(2**63 - 1)
        self.max_timestamp, self.offset_of_max_timestamp = self.time_index.last_entry
        self.next_offset = self.base_offset
        self._since_index = 0
        self._tail = position
        for info in self.scan_headers(position):
            self._account(info, index=False)
        if self._tail != self.size:
            return self.recover(epochs)
        return 0

    def recover(self, epochs=None) -> int:
        """Rebuild both indexes from the data, validating every batch's
        lengths and CRC; cut the file at the first bad byte. Returns the
        number of bytes cut off.

        With ``epochs`` (the partition's LeaderEpochCache) every batch of a
        newer leader epoch is assigned to it, as Kafka's recovery does: the
        epoch checkpoint is written after the data, so a crash in between
        leaves batches of an epoch the checkpoint does not know.

        The aborted-transaction index is emptied: the log rebuilds it with
        the producer state, which knows where each transaction began."""
        self.offset_index.reset()
        self.time_index.reset()
        self.txn_index.reset()
        self.txn_index_stale = True
        self._indexes_missing = False
        self.next_offset = self.base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = self.base_offset
        self.first_batch_timestamp = None
        self._since_index = 0
        self._tail = 0
        position = 0
        while position < self.size:
            info = self._read_valid_batch(position)
            if info is None or info.base_offset < self.next_offset:
                break
            if epochs is not None:
                epoch = int.from_bytes(os.pread(self._fd, 4, position + 12), "big", signed=True)
                if epoch >= 0 and (epochs.latest_epoch is None or epoch > epochs.latest_epoch):
                    epochs.assign(epoch, info.base_offset)
            self._account(info, index=True)
            position += info.size
        cut = self.size - position
        if cut:
            self._cut(position)
        # The rebuilt indexes and the cut are not on disk yet: the next flush
        # must fsync them before the recovery point may pass this segment.
        self.dirty = True
        return cut

    def _read_valid_batch(self, position: int) -> BatchInfo | None:
        head = os.pread(self._fd, LOG_OVERHEAD, position)
        if len(head) < LOG_OVERHEAD:
            return None
        length = int.from_bytes(head[8:12], "big", signed=True)
        if not MIN_BATCH_LENGTH <= length <= MAX_BATCH_SIZE or position + LOG_OVERHEAD + length > self.size:
            return None
        data = os.pread(self._fd, LOG_OVERHEAD + length, position)
        try:
            batch = RecordBatch(memoryview(data))
            batch.validate()
        except ProtocolError:
            return None
        return BatchInfo(position, batch.base_offset, batch.last_offset, len(data), batch.max_timestamp)

    # -- writing -------------------------------------------------------------

    def append(self, data, batches: list[BatchInfo]) -> None:
        """Append the bytes of ``batches`` (already validated, offsets
        assigned); their positions are relative to the start of ``data``.

        All or nothing: when a write fails (a full disk may take part of
        the bytes first) the file is cut back to where it ended and the
        segment's bookkeeping restored, so no torn batch stays under the
        next append. If even the cut fails, the error still reaches the
        log, whose directory then goes offline; the next start recovers
        it and cuts the torn tail there."""
        position = self.size
        view = memoryview(data)
        before = self._accounting()
        try:
            written = 0
            while written < len(view):
                n = os.pwrite(self._fd, view[written:], position + written)
                if n <= 0:
                    raise OSError(errno.EIO, f"write to {self.path} made no progress at {position + written}")
                written += n
            for info in batches:
                self._account(info, index=True, shift=position)
        except OSError:
            self._undo_append(position, before)
            raise
        self.size = position + len(view)
        self.dirty = True

    def _accounting(self) -> tuple:
        return tuple(getattr(self, name) for name in _ACCOUNTING)

    def _undo_append(self, position: int, accounting: tuple) -> None:
        for name, value in zip(_ACCOUNTING, accounting):
            setattr(self, name, value)
        try:
            os.ftruncate(self._fd, position)
        except OSError:
            pass  # the caller's error stands; recovery cuts the tail at the next start

    def _account(self, info: BatchInfo, index: bool, shift: int = 0) -> None:
        """``info.position + shift`` is where the batch is in the file."""
        if info.max_timestamp > self.max_timestamp:
            self.max_timestamp = info.max_timestamp
            self.offset_of_max_timestamp = info.last_offset
        if self.first_batch_timestamp is None:
            self.first_batch_timestamp = info.max_timestamp
        # A full index skips the entry (the index is sparse, lookups stay
        # correct): can_hold() only checks before an append, and one append
        # of many batches, or a recovery of a segment written under a larger
        # segment.index.bytes, may want more entries than are left. Raising
        # here would leave bytes written but not accounted for.
        if (
            index
            and self._since_index > self.index_interval
            and not self.offset_index.is_full()
            and not self.time_index.is_full()
        ):
            self.offset_index.append(info.last_offset, info.position + shift)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            self._since_index = 0
        self._since_index += info.size
        self.next_offset = info.last_offset + 1
        self._tail = info.position + shift + info.size

    def can_hold(self, size: int, last_offset: int, segment_bytes: int) -> bool:
        """False when appending would break a roll condition of Kafka's:
        segment size, a full index, or a relative offset past int32."""
        if self.size and self.size + size > segment_bytes:
            return False
        if self.offset_index.is_full() or self.time_index.is_full():
            return False
        return last_offset - self.base_offset <= 0x7FFFFFFF

    def is_due_to_roll(self, now_ms: int, segment_ms: int, max_timestamp: int = -1) -> bool:
        """Kafka's segment.ms rule (LogSegment.shouldRoll/timeWaitedForRoll):
        the incoming batches' max timestamp against the first batch's, and
        the wall clock against the creation time only when batches carry no
        timestamps. Comparing the clock with record timestamps would roll on
        every append of old data (a mirror, a replay)."""
        if self.size == 0:
            return False
        first = self.first_batch_timestamp
        if first is not None and first >= 0:
            return max_timestamp - first > segment_ms
        return now_ms - self.created_ms > segment_ms

    def on_roll(self) -> None:
        """The segment stops being active: record its max timestamp in the
        time index and give back the preallocated index space."""
        if self.max_timestamp >= 0:
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
        self.offset_index.trim()
        self.time_index.trim()

    def truncate_to(self, offset: int) -> int:
        """Remove every batch that holds an offset >= ``offset`` (a batch
        straddling it goes whole). Returns the bytes removed."""
        found = self.find(offset)
        # Before the early return too: a segment that rolled has trimmed,
        # full indexes, and when a truncation at its very end makes it the
        # active one again it needs their room back (Kafka resizes them
        # whatever was cut), or the next append rolls at once.
        self.offset_index.truncate_to(offset)
        self.time_index.truncate_to(offset)
        self.txn_index.truncate_to(offset)
        if found is None:
            return 0
        cut = self.size - found.position
        self._cut(found.position)
        if found.position == 0:
            self.recover()
        else:
            self.load()
        self.dirty = True
        return cut

    def _cut(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        self.size = size
        self._file.truncations += 1

    @property
    def file(self) -> SegmentFile | None:
        """The open .log file, None once closed. Holding it keeps the
        descriptor open (a flusher fsyncs through it off-thread, so a
        segment closed meanwhile cannot pull the descriptor from under it)."""
        return self._file

    def flush(self) -> None:
        if self.dirty and self._fd >= 0:
            os.fsync(self._fd)
            self.offset_index.flush()
            self.time_index.flush()
            self.txn_index.flush()
            self.dirty = False

    # -- reading -------------------------------------------------------------

    def scan_headers(self, position: int = 0):
        """Header facts of each whole batch from ``position`` to the end."""
        while position + HEADER_SIZE <= self.size:
            head = os.pread(self._fd, HEADER_SIZE, position)
            h = HEADER.unpack(head)
            size = h[1] + LOG_OVERHEAD
            if h[1] < MIN_BATCH_LENGTH or position + size > self.size:
                return
            yield BatchInfo(position, h[0], h[0] + h[6], size, h[8])
            position += size

    def find(self, offset: int) -> BatchInfo | None:
        """The first batch whose last offset is >= ``offset``. The walk of
        scan_headers, inline: every Fetch of every partition starts here,
        usually at the batch the index points to."""
        _, position = self.offset_index.lookup(offset)
        fd, size_limit = self._fd, self.size
        while position + HEADER_SIZE <= size_limit:
            h = HEADER.unpack(os.pread(fd, HEADER_SIZE, position))
            size = h[1] + LOG_OVERHEAD
            if h[1] < MIN_BATCH_LENGTH or position + size > size_limit:
                return None
            last = h[0] + h[6]
            if last >= offset:
                return BatchInfo(position, h[0], last, size, h[8])
            position += size
        return None

    def read(
        self, offset: int, max_bytes: int, max_offset: int, as_region: bool = False
    ) -> tuple[BatchInfo, bytes | FileRegion] | None:
        """Whole batches from the one holding ``offset``, at most ``max_bytes``
        but always the first batch whole, none at or past ``max_offset``: as
        bytes, or with ``as_region`` as a FileRegion to send from the file."""
        first = self.find(offset)
        if first is None or first.base_offset >= max_offset:
            return None
        end = self._end_of_batches(first, max_bytes, max_offset)
        if as_region:
            return first, FileRegion(self._file, first.position, end - first.position)
        return first, os.pread(self._fd, end - first.position, first.position)

    def _end_of_batches(self, first: BatchInfo, max_bytes: int, max_offset: int) -> int:
        """Where the last batch a read may return ends. Only headers are
        read, never the records: the offset index jumps to the last indexed
        batch within both bounds (its start is the end of the batch before
        it), then 12-byte reads walk the rest, at most about
        index.interval.bytes of batches."""
        cap = first.position + max(max_bytes, first.size)
        if cap >= self._tail and max_offset >= self.next_offset:
            return self._tail  # the whole rest of the segment: a consumer near the end
        position = first.position + first.size
        index = self.offset_index
        beyond = index.fetch_upper_bound_offset(0, cap + 1)  # the first entry past cap
        bound = max_offset - 1 if beyond is None else min(max_offset - 1, beyond[0] - 1)
        _, jump = index.lookup(bound)
        position = max(position, jump)
        limit = min(cap, self._tail)
        while position + LOG_OVERHEAD <= limit:
            base, length = _BASE_AND_LENGTH.unpack(os.pread(self._fd, LOG_OVERHEAD, position))
            end = position + LOG_OVERHEAD + length
            if base >= max_offset or end > limit or length < MIN_BATCH_LENGTH:
                break
            position = end
        return position

    def read_at(self, position: int, size: int) -> bytes:
        return os.pread(self._fd, size, position)

    def find_timestamp(self, timestamp: int) -> BatchInfo | None:
        """The first batch whose max timestamp is >= ``timestamp``."""
        _, offset = self.time_index.lookup(timestamp)
        _, position = self.offset_index.lookup(offset)
        for info in self.scan_headers(position):
            if info.max_timestamp >= timestamp:
                return info
        return None

    # -- lifecycle -----------------------------------------------------------

    def close(self, trim: bool = True) -> None:
        """Release the files; ``trim`` writes the indexes' last entries and
        cuts their preallocation (not on a failed disk, nor before a delete).
        Closed afterwards even if trimming fails."""
        if self._fd >= 0:
            try:
                self.offset_index.close(trim)
                self.time_index.close(trim)
            finally:
                # Regions of this file still waiting to be sent, and a
                # flush in progress, keep it open.
                self._file = None
                self._fd = -1

    def delete(self) -> None:
        self.close(trim=False)
        for path in (self.path, self.offset_index.path, self.time_index.path, self.txn_index.path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def rename_suffix(self, old: str, new: str) -> None:
        """Change the suffix of all its files (used by the compaction swap)."""
        for obj in (self.offset_index, self.time_index, self.txn_index):
            obj.rename(Path(str(obj.path).removesuffix(old) + new))
        target = Path(str(self.path).removesuffix(old) + new)
        os.rename(self.path, target)
        self.path = target

    def __repr__(self) -> str:
        return f"LogSegment(base={self.base_offset}, next={self.next_offset}, size={self.size})"
