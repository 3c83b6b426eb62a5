"""The sparse offset and time indexes that sit beside each log segment.

File formats (Kafka's, byte for byte, so its tools can read ours):

    <base offset>.index       8-byte entries, big-endian
        int32  relative offset   offset - segment base offset
        int32  position          byte position of the batch in the .log

    <base offset>.timeindex   12-byte entries, big-endian
        int64  timestamp         largest timestamp seen so far in the segment
        int32  relative offset   offset of the batch that carried it

Entries are sparse (one per index.interval.bytes of log, roughly) and sorted:
relative offsets strictly increase in the offset index, timestamps strictly
increase in the time index.

Like Kafka, a writable index file is preallocated to max_index_size (rounded
down to whole entries) so appends do not grow it one entry at a time, and is
trimmed to exactly its entries when the segment rolls or closes. Unlike
Kafka we preallocate on the first append that needs room rather than on
open (the log opens every segment writable; only the active one should get
a tail of zeros), and we do not mmap: the entries live in `array`s (binary
search with bisect) and each new entry is written to its slot with os.pwrite.

The file carries no entry count, so an index reopened after an unclean stop
still has its preallocated zeros: they are read as entries, on purpose, and
sanity_check() reports them (relative offsets stop increasing), which is the
log's cue to rebuild the index from the segment.
"""

from __future__ import annotations

import io
import os
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from itertools import pairwise
from pathlib import Path

DEFAULT_MAX_INDEX_SIZE = 10 * 1024 * 1024  # segment.index.bytes
NO_TIMESTAMP = -1  # RecordBatch.NO_TIMESTAMP

_INT32_MAX = 2**31 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

assert array("i").itemsize == 4 and array("q").itemsize == 8


class CorruptIndexError(Exception):
    """An index file does not hold a valid index; rebuild it from the log."""


PENDING_BYTES = 4096  # index entries are written in pages, not one by one


class _SparseIndex:
    """File handling shared by both indexes: open, preallocate, write a slot,
    trim, rename, delete. Subclasses keep the entries in arrays."""

    ENTRY_SIZE: int

    def __init__(
        self,
        path: os.PathLike | str,
        base_offset: int,
        max_index_size: int = DEFAULT_MAX_INDEX_SIZE,
        writable: bool = True,
    ) -> None:
        self.path = Path(path)
        self.base_offset = base_offset
        self.max_index_size = max_index_size
        self.writable = writable
        # No descriptor is held between operations: the entries live in
        # memory, and the file is only written a page of entries at a time,
        # trimmed or synced. A broker with 10,000 partitions would otherwise
        # hold two index descriptors per segment beside the log's own.
        flags = os.O_RDWR | os.O_CREAT if writable else os.O_RDONLY
        fd = os.open(self.path, flags | os.O_CLOEXEC, 0o644)
        try:
            size = os.fstat(fd).st_size
            self._torn_size = size if size % self.ENTRY_SIZE else None
            self._load(_pread_all(fd, size - size % self.ENTRY_SIZE))
        finally:
            os.close(fd)
        self._closed = False
        self._length = size
        self._max_entries = self._full_capacity() if writable else self.entries
        # Entries not yet written to the file, from slot _pending_slot on. The
        # arrays answer lookups; the file only has to be complete when it is
        # flushed, trimmed or closed (a crash before that is repaired by
        # recovery, which rebuilds indexes past the recovery point).
        self._pending = bytearray()
        self._pending_slot = 0

    # -- subclass hooks ---------------------------------------------------

    def _load(self, data: bytes) -> None:
        raise NotImplementedError

    def _drop_from(self, n: int) -> None:
        """Forget entries n and later (in memory)."""
        raise NotImplementedError

    def _relative_offsets(self) -> array:
        raise NotImplementedError

    @property
    def entries(self) -> int:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------

    @property
    def max_entries(self) -> int:
        return self._max_entries

    @property
    def size_in_bytes(self) -> int:
        return self.entries * self.ENTRY_SIZE

    def is_full(self) -> bool:
        return self.entries >= self._max_entries

    def relative_offset(self, offset: int) -> int:
        rel = offset - self.base_offset
        if not 0 <= rel <= _INT32_MAX:
            raise ValueError(f"offset {offset} does not fit index {self.path} (base offset {self.base_offset})")
        return rel

    def can_append_offset(self, offset: int) -> bool:
        return 0 <= offset - self.base_offset <= _INT32_MAX

    def truncate_to(self, offset: int) -> None:
        """Drop entries whose offset is >= `offset`, and give the index its
        full capacity back (the truncated segment becomes the active one)."""
        self._check_mutable()
        self._truncate_entries(bisect_left(self._relative_offsets(), offset - self.base_offset))

    def reset(self) -> None:
        """Drop every entry, before rebuilding the index from the log."""
        self._check_mutable()
        self._truncate_entries(0)

    def resize(self, new_size: int) -> None:
        """Set the file length to new_size rounded down to whole entries (never
        below the entries held) and the capacity to match, as Kafka's
        AbstractIndex.resize."""
        self._check_mutable()
        self._write_pending()
        length = max(new_size - new_size % self.ENTRY_SIZE, self.size_in_bytes)
        if length != self._length:
            os.truncate(self.path, length)
            self._length = length
        self._max_entries = length // self.ENTRY_SIZE

    def trim(self) -> None:
        """Shrink the file to exactly its entries (on roll); the index is then
        full until truncate_to() or reset()."""
        self.resize(self.size_in_bytes)
        self._torn_size = None

    def flush(self) -> None:
        if self.writable:
            self._write_pending()
            fd = self._open_file()
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self, trim: bool = True) -> None:
        """Trim (unless told not to: a failing disk, a test's simulated crash)
        and release the file. Closing twice is harmless."""
        if self._closed:
            return
        try:
            if self.writable:
                self._write_pending() if trim else self._pending.clear()
            if trim and self.writable:
                self.trim()
        finally:
            self._closed = True

    def delete(self) -> None:
        self.close(trim=False)
        self.path.unlink(missing_ok=True)

    def rename(self, new_path: os.PathLike | str) -> None:
        new_path = Path(new_path)
        os.replace(self.path, new_path)
        self.path = new_path

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, base_offset={self.base_offset}, entries={self.entries})"

    # -- internals -----------------------------------------------------

    def _full_capacity(self) -> int:
        return max(self.max_index_size // self.ENTRY_SIZE, self.entries)

    def _truncate_entries(self, n: int) -> None:
        self._write_pending()
        if n < self.entries:
            self._drop_from(n)
            # Cut the file at the last kept entry; the next append grows it
            # again, so the dropped entries come back as zeros: after a crash
            # they read as corrupt, not as live entries past the log's end.
            os.truncate(self.path, n * self.ENTRY_SIZE)
            self._length = n * self.ENTRY_SIZE
            self._torn_size = None
        self._max_entries = self._full_capacity()

    def _write_slot(self, n: int, entry: bytes) -> None:
        if (n + 1) * self.ENTRY_SIZE > self._length:
            # Preallocate on the first append that needs room, not on open:
            # the log opens every segment writable, and only the active one
            # should carry a tail of zeros that a crash would leave behind.
            self._write_pending()
            self._length = self._max_entries * self.ENTRY_SIZE
            os.truncate(self.path, self._length)
        if not self._pending:
            self._pending_slot = n
        self._pending += entry
        if len(self._pending) >= PENDING_BYTES:
            self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        data, self._pending = self._pending, bytearray()
        fd = self._open_file()
        try:
            written = os.pwrite(fd, data, self._pending_slot * self.ENTRY_SIZE)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(f"short write to index {self.path}: {written} of {len(data)} bytes")

    def _check_room(self) -> None:
        self._check_mutable()
        if self.entries >= self._max_entries:
            raise ValueError(f"attempt to append to a full index {self.path} ({self.entries} entries)")

    def _check_mutable(self) -> None:
        self._check_open()
        if not self.writable:
            raise io.UnsupportedOperation(f"index {self.path} was opened read-only")

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"index {self.path} is closed")

    def _open_file(self) -> int:
        self._check_open()
        return os.open(self.path, os.O_RDWR | os.O_CLOEXEC)

    def _check_file_size(self) -> None:
        if self._torn_size is not None:
            raise CorruptIndexError(
                f"index file {self.path} is corrupt: {self._torn_size} bytes is not a multiple of {self.ENTRY_SIZE}"
            )


class OffsetIndex(_SparseIndex):
    """Maps offsets to byte positions in the segment's .log file."""

    ENTRY_SIZE = 8
    _ENTRY = struct.Struct(">ii")

    def _load(self, data: bytes) -> None:
        pairs = array("i")
        pairs.frombytes(data)
        if sys.byteorder == "little":
            pairs.byteswap()
        self._rel = pairs[0::2]
        self._pos = pairs[1::2]

    def _drop_from(self, n: int) -> None:
        del self._rel[n:]
        del self._pos[n:]

    def _relative_offsets(self) -> array:
        return self._rel

    @property
    def entries(self) -> int:
        return len(self._rel)

    @property
    def last_offset(self) -> int:
        """Absolute offset of the last entry; the base offset when empty."""
        return self.base_offset + self._rel[-1] if self._rel else self.base_offset

    def append(self, offset: int, position: int) -> None:
        """Add (offset, position); the offset must exceed the last entry's."""
        self._check_room()
        if self._rel and offset <= self.last_offset:
            raise ValueError(
                f"attempt to append offset {offset} to index {self.path}, "
                f"no larger than the last offset {self.last_offset}"
            )
        rel = self.relative_offset(offset)
        if not 0 <= position <= _INT32_MAX:
            raise ValueError(f"position {position} does not fit index {self.path}")
        self._write_slot(len(self._rel), self._ENTRY.pack(rel, position))
        self._rel.append(rel)
        self._pos.append(position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the last entry at or before `offset`;
        (base_offset, 0) when there is none."""
        n = bisect_right(self._rel, offset - self.base_offset) - 1
        if n < 0:
            return self.base_offset, 0
        return self.base_offset + self._rel[n], self._pos[n]

    def fetch_upper_bound_offset(self, position: int, fetch_size: int) -> tuple[int, int] | None:
        """The first entry at or beyond position + fetch_size: an offset the
        fetch surely does not reach (Kafka's fetchUpperBoundOffset)."""
        n = bisect_left(self._pos, position + fetch_size)
        if n == len(self._pos):
            return None
        return self.base_offset + self._rel[n], self._pos[n]

    def entry(self, n: int) -> tuple[int, int]:
        if not 0 <= n < len(self._rel):
            raise IndexError(f"entry {n} of index {self.path}, which has {len(self._rel)} entries")
        return self.base_offset + self._rel[n], self._pos[n]

    def sanity_check(self, log_size: int | None = None) -> None:
        """Raise CorruptIndexError unless the file holds a plausible index for a
        .log of `log_size` bytes."""
        self._check_file_size()
        if not self._rel:
            return
        if self._rel[0] < 0:
            raise CorruptIndexError(
                f"index {self.path} is corrupt: first offset {self.base_offset + self._rel[0]} "
                f"is below the base offset {self.base_offset}"
            )
        for n, (a, b) in enumerate(pairwise(self._rel), start=1):
            if b <= a:
                raise CorruptIndexError(
                    f"index {self.path} is corrupt: entry {n} has offset {self.base_offset + b}, "
                    f"not above {self.base_offset + a}"
                )
        if self._pos[0] < 0:
            raise CorruptIndexError(f"index {self.path} is corrupt: negative position {self._pos[0]}")
        for n, (a, b) in enumerate(pairwise(self._pos), start=1):
            if b < a:
                raise CorruptIndexError(f"index {self.path} is corrupt: entry {n} has position {b}, below {a}")
        if log_size is not None and self._pos[-1] >= log_size:
            raise CorruptIndexError(
                f"index {self.path} is corrupt: position {self._pos[-1]} is beyond the log's {log_size} bytes"
            )


class TimeIndex(_SparseIndex):
    """Maps timestamps to offsets, for ListOffsets by time and time retention."""

    ENTRY_SIZE = 12
    _ENTRY = struct.Struct(">qi")

    def _load(self, data: bytes) -> None:
        pairs = list(self._ENTRY.iter_unpack(data))
        self._ts = array("q", [timestamp for timestamp, _ in pairs])
        self._rel = array("i", [rel for _, rel in pairs])

    def _drop_from(self, n: int) -> None:
        del self._ts[n:]
        del self._rel[n:]

    def _relative_offsets(self) -> array:
        return self._rel

    @property
    def entries(self) -> int:
        return len(self._rel)

    def is_full(self) -> bool:
        # Like Kafka, keep the last slot free for the entry written when the
        # segment rolls (LogSegment.onBecomeInactiveSegment).
        return self.entries >= self._max_entries - 1

    @property
    def last_entry(self) -> tuple[int, int]:
        """(timestamp, offset) of the last entry; (-1, base_offset) when empty."""
        if not self._rel:
            return NO_TIMESTAMP, self.base_offset
        return self._ts[-1], self.base_offset + self._rel[-1]

    @property
    def last_offset(self) -> int:
        return self.last_entry[1]

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Add (timestamp, offset) if the timestamp is above the last entry's;
        the offset may not go backwards. Only raises for a full index when an
        entry would actually be written, so the reserved last slot is usable."""
        self._check_mutable()
        last_timestamp, last_offset = self.last_entry
        if self._rel and offset < last_offset:
            raise ValueError(
                f"attempt to append offset {offset} to time index {self.path}, below the last offset {last_offset}"
            )
        if timestamp <= last_timestamp:
            return
        if not timestamp <= _INT64_MAX:
            raise ValueError(f"timestamp {timestamp} does not fit time index {self.path}")
        rel = self.relative_offset(offset)
        self._check_room()
        self._write_slot(len(self._rel), self._ENTRY.pack(timestamp, rel))
        self._ts.append(timestamp)
        self._rel.append(rel)

    def lookup(self, timestamp: int) -> tuple[int, int]:
        """(timestamp, offset) of the last entry whose timestamp is <= `timestamp`;
        (-1, base_offset) when there is none."""
        n = bisect_right(self._ts, timestamp) - 1
        if n < 0:
            return NO_TIMESTAMP, self.base_offset
        return self._ts[n], self.base_offset + self._rel[n]

    def entry(self, n: int) -> tuple[int, int]:
        if not 0 <= n < len(self._rel):
            raise IndexError(f"entry {n} of time index {self.path}, which has {len(self._rel)} entries")
        return self._ts[n], self.base_offset + self._rel[n]

    def sanity_check(self, log_size: int | None = None) -> None:
        """Raise CorruptIndexError unless the file holds a plausible time index.
        `log_size` is accepted so both indexes are checked alike; a time index
        holds no positions to check against it."""
        self._check_file_size()
        if not self._rel:
            return
        if self._rel[0] < 0:
            raise CorruptIndexError(
                f"time index {self.path} is corrupt: first offset {self.base_offset + self._rel[0]} "
                f"is below the base offset {self.base_offset}"
            )
        # maybe_append only ever writes a larger timestamp, so a repeat (such
        # as the zeros of a preallocated file) means the file is not an index.
        for n, (a, b) in enumerate(pairwise(self._ts), start=1):
            if b <= a:
                raise CorruptIndexError(
                    f"time index {self.path} is corrupt: entry {n} has timestamp {b}, not above {a}"
                )
        for n, (a, b) in enumerate(pairwise(self._rel), start=1):
            if b < a:
                raise CorruptIndexError(
                    f"time index {self.path} is corrupt: entry {n} has offset {self.base_offset + b}, "
                    f"below {self.base_offset + a}"
                )


def _pread_all(fd: int, size: int) -> bytes:
    chunks = []
    done = 0
    while done < size:
        chunk = os.pread(fd, size - done, done)
        if not chunk:
            raise OSError(f"index file shrank while being read ({done} of {size} bytes)")
        chunks.append(chunk)
        done += len(chunk)
    return b"".join(chunks)
