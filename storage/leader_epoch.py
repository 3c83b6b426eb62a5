"""The leader epoch cache of one partition (KIP-101, KIP-279).

Each entry (epoch, start offset) says that leader `epoch` wrote its first
record at `start offset`; the epoch's records end where the next entry
starts, or at the log end for the latest epoch. A follower that was offline
asks the leader for the end offset of its own latest epoch
(OffsetsForLeaderEpoch) and truncates to it, rather than to its high
watermark, which is what keeps replicas from diverging.

Invariant, kept by assign(): epochs and start offsets both strictly increase
down the list. An assignment that would break it wins, and the entries it
conflicts with are dropped, as Kafka does: the log already holds the new
leader's records, so the cache must describe them.

Every change is written at once to <partition dir>/leader-epoch-checkpoint
(format in checkpoint.py). Kafka defers the write after a truncation; we do
not, the file is tiny.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from pathlib import Path

from .checkpoint import read_epochs, write_epochs

FILE_NAME = "leader-epoch-checkpoint"
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


class LeaderEpochCache:
    """(epoch, start offset) entries of one partition, persisted at `path`."""

    def __init__(self, path: os.PathLike | str) -> None:
        self.path = Path(path)  # reassign when the partition directory moves
        self._entries: list[tuple[int, int]] = []
        # Loading goes through the assignment rules, so a file written out of
        # order is read back monotonic (as Kafka's constructor does).
        for epoch, start_offset in read_epochs(self.path):
            self._assign(epoch, start_offset)

    @property
    def entries(self) -> list[tuple[int, int]]:
        return list(self._entries)

    @property
    def latest_epoch(self) -> int | None:
        return self._entries[-1][0] if self._entries else None

    @property
    def latest_entry(self) -> tuple[int, int] | None:
        return self._entries[-1] if self._entries else None

    @property
    def earliest_entry(self) -> tuple[int, int] | None:
        return self._entries[0] if self._entries else None

    def assign(self, epoch: int, start_offset: int) -> None:
        """Record that `epoch` starts at `start_offset` (called for every batch
        appended; a no-op unless the epoch is new or starts earlier)."""
        if self._assign(epoch, start_offset):
            self._persist()

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(epoch, end offset) for an OffsetsForLeaderEpoch request: the largest
        known epoch <= requested_epoch and the start offset of the first epoch
        above it, or the log end offset for the latest epoch.

        A requested epoch below every known one yields itself and the earliest
        start offset (its records are gone; the follower should fetch from the
        leader's start). An unknown epoch above the latest, the undefined epoch,
        or an empty cache yields (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET).
        """
        if requested_epoch == UNDEFINED_EPOCH:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if requested_epoch == self.latest_epoch:
            return requested_epoch, log_end_offset
        higher = bisect_right(self._entries, requested_epoch, key=_epoch)
        if higher == len(self._entries):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        end_offset = self._entries[higher][1]
        if higher == 0:
            return requested_epoch, end_offset
        return self._entries[higher - 1][0], end_offset

    def truncate_from_end(self, end_offset: int) -> None:
        """Drop the entries starting at or after `end_offset` (the log was
        truncated to it). A negative offset (undefined) changes nothing."""
        if end_offset < 0:
            return
        n = len(self._entries)
        while self._entries and self._entries[-1][1] >= end_offset:
            self._entries.pop()
        if len(self._entries) != n:
            self._persist()

    def truncate_from_start(self, start_offset: int) -> None:
        """The log now starts at `start_offset`: drop the entries that start at
        or before it, keeping the last of them moved up to `start_offset`."""
        keep = bisect_right(self._entries, start_offset, key=_start)
        if keep == 0:
            return
        covering_epoch = self._entries[keep - 1][0]
        entries = [(covering_epoch, start_offset), *self._entries[keep:]]
        if entries != self._entries:
            self._entries = entries
            self._persist()

    def epoch_for_offset(self, offset: int) -> int | None:
        """The epoch of the leader that wrote `offset`, None if before them all."""
        n = bisect_right(self._entries, offset, key=_start)
        return self._entries[n - 1][0] if n else None

    def clear(self) -> None:
        """Forget every entry and write the empty checkpoint."""
        self._entries = []
        self._persist()

    def delete(self) -> None:
        """Forget every entry and remove the checkpoint file."""
        self._entries = []
        self.path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"LeaderEpochCache({str(self.path)!r}, {self._entries})"

    def _assign(self, epoch: int, start_offset: int) -> bool:
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"invalid leader epoch entry ({epoch}, {start_offset}) for {self.path}")
        if self._entries:
            latest_epoch, latest_start = self._entries[-1]
            if epoch == latest_epoch and start_offset >= latest_start:
                return False
        while self._entries and (self._entries[-1][0] >= epoch or self._entries[-1][1] >= start_offset):
            self._entries.pop()
        self._entries.append((epoch, start_offset))
        return True

    def _persist(self) -> None:
        write_epochs(self.path, self._entries)


def _epoch(entry: tuple[int, int]) -> int:
    return entry[0]


def _start(entry: tuple[int, int]) -> int:
    return entry[1]
