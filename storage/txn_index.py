"""The aborted-transaction index beside a log segment (``<base>.txnindex``).

One entry per transaction aborted in the segment, in the order their abort
markers were written, 34 bytes each, big-endian (Kafka's AbortedTxn):

    int16  version              0
    int64  producer id
    int64  first offset         of the transaction's first batch
    int64  last offset          of its abort marker
    int64  last stable offset   the partition's LSO once the marker was written

A read_committed fetch asks which aborted transactions overlap the offsets
it returns, and stops walking segments once an entry's last stable offset
reaches past them: no transaction still open then can have started before.

Like Kafka, the file is created by the first entry (most segments have
none) and has no preallocated tail; a torn last entry after a crash is
reported by ``sanity_check`` and the log rebuilds the index from its
segment, as it does the offset and time indexes.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import NamedTuple

from .index import CorruptIndexError

TXNINDEX_SUFFIX = ".txnindex"
_ENTRY = struct.Struct(">hqqqq")
ENTRY_SIZE = _ENTRY.size  # 34
CURRENT_VERSION = 0


class AbortedTxn(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


class TxnSearch(NamedTuple):
    """Aborted transactions overlapping the asked range, and whether the
    search may stop here (no earlier-started transaction can be missing)."""

    aborted: list[AbortedTxn]
    complete: bool


class TransactionIndex:
    def __init__(self, path: os.PathLike | str, base_offset: int, exists: bool = True):
        """``exists``: False when the caller knows there is no file (most
        segments have none), sparing an open per segment on start-up."""
        self.path = Path(path)
        self.base_offset = base_offset
        self._entries: list[AbortedTxn] = []
        self.dirty = False  # entries written since the last flush
        try:
            data = self.path.read_bytes() if exists else b""
        except FileNotFoundError:
            data = b""
        whole = len(data) - len(data) % ENTRY_SIZE
        self._torn = whole != len(data)
        for pos in range(0, whole, ENTRY_SIZE):
            version, pid, first, last, lso = _ENTRY.unpack_from(data, pos)
            if version != CURRENT_VERSION:
                # Kept as read: sanity_check refuses the file.
                self._torn = True
            self._entries.append(AbortedTxn(pid, first, last, lso))

    @property
    def entries(self) -> list[AbortedTxn]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, txn: AbortedTxn) -> None:
        """Add an aborted transaction; its marker must come after the last one's."""
        if self._entries and self._entries[-1].last_offset >= txn.last_offset:
            raise ValueError(
                f"aborted transaction ending at {txn.last_offset} after one ending at "
                f"{self._entries[-1].last_offset} in {self.path}"
            )
        self._entries.append(txn)
        with open(self.path, "ab") as f:
            f.write(_ENTRY.pack(CURRENT_VERSION, *txn))
        self.dirty = True

    @property
    def last_offset(self) -> int:
        """The last abort marker's offset (-1: none)."""
        return self._entries[-1].last_offset if self._entries else -1

    def flush(self) -> None:
        if self.dirty and self._entries:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.dirty = False

    def truncate_to(self, offset: int) -> None:
        """Forget the transactions whose abort marker is at ``offset`` or later."""
        keep = len(self._entries)
        while keep and self._entries[keep - 1].last_offset >= offset:
            keep -= 1
        if keep == len(self._entries) and not self._torn:
            return
        del self._entries[keep:]
        self._rewrite()

    def reset(self) -> None:
        """Drop every entry (the segment is being rebuilt or emptied)."""
        self._entries.clear()
        self._torn = False
        self.path.unlink(missing_ok=True)

    def _rewrite(self) -> None:
        if not self._entries:
            self.path.unlink(missing_ok=True)
        else:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_bytes(b"".join(_ENTRY.pack(CURRENT_VERSION, *t) for t in self._entries))
            os.replace(tmp, self.path)
            self.dirty = True
        self._torn = False

    def collect(self, fetch_offset: int, upper_bound: int) -> TxnSearch:
        """The aborted transactions with data in [fetch_offset, upper_bound)."""
        found = []
        for txn in self._entries:
            if txn.last_offset >= fetch_offset and txn.first_offset < upper_bound:
                found.append(txn)
            if txn.last_stable_offset >= upper_bound:
                return TxnSearch(found, True)
        return TxnSearch(found, False)

    def sanity_check(self) -> None:
        """Raise CorruptIndexError unless every entry is whole, of version 0
        and ends within this segment."""
        if self._torn:
            raise CorruptIndexError(f"{self.path} holds a torn or unknown entry")
        for txn in self._entries:
            if txn.last_offset < self.base_offset:
                raise CorruptIndexError(
                    f"{self.path}: an aborted transaction ends at {txn.last_offset}, "
                    f"before the segment's base offset {self.base_offset}"
                )

    def rename(self, path: os.PathLike | str) -> None:
        path = Path(path)
        if self.path.exists():
            os.replace(self.path, path)
        self.path = path

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
