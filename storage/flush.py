"""fsync without holding up the thread that owns the log.

``begin_flush`` (owner thread) takes the open files of the segments with
unsynced data and notes how far each had grown; ``FlushTicket.sync`` (any
thread) fsyncs them, touching no log state, so appends go on meanwhile;
then ``complete_flush`` (owner thread) marks clean what the fsync covered
and moves the recovery point, or ``abort_flush`` takes the log's directory
offline. Indexes are not synced here: recovery rebuilds them from the data
past the recovery point, as Kafka's does.

The ticket holds the segments' SegmentFile objects, not descriptor
numbers: a segment closed meanwhile (its topic deleted, a compaction swap,
retention) releases its descriptor only when the ticket lets go, so the
fsync can never hit a closed or reused descriptor. A segment already
closed when the flush begins has nothing left to sync.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

from .log import KafkaStorageError, PartitionLog, now_ms
from .segment import LogSegment, SegmentFile


class FlushTimes:
    """How long log flushes took (Kafka's LogFlushRateAndTimeMs): counts
    per upper bound of ``bounds`` in seconds, one more for the slower, and
    their sum. Plain numbers, bumped by whoever times a flush on the thread
    that owns the log; the broker's metrics read them."""

    bounds = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

    def __init__(self):
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds


@dataclass
class FlushTicket:
    log: PartitionLog
    end_offset: int
    # Bytes the fsync may have to write: the appends since the last one,
    # and whole any other dirty segment (rolled, or swapped in by the
    # cleaner). An upper bound, for choosing where to run the sync.
    size: int = 0
    appended: int = 0  # log.unflushed_bytes when the flush began
    messages: int = 0  # log.unflushed_messages when the flush began
    files: list[SegmentFile] = field(default_factory=list)
    marks: list[tuple[LogSegment, int]] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)  # holding new segment files

    def sync(self) -> None:
        for file in self.files:
            os.fsync(file.fd)
        for d in self.dirs:
            try:
                dfd = os.open(d, os.O_RDONLY)
            except FileNotFoundError:
                continue  # deleted with its partition: nothing left to make durable
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


def begin_flush(log: PartitionLog) -> FlushTicket:
    """Raises KafkaStorageError if the log's directory is offline."""
    log.check_online()
    ticket = FlushTicket(log, log.log_end_offset, appended=log.unflushed_bytes, messages=log.unflushed_messages)
    # A segment file whose directory entry is not synced can vanish in a
    # power loss even though its data was fsynced.
    ticket.dirs = list(log._dirs_to_sync)
    log._dirs_to_sync.clear()
    active = log.segments[-1] if log.segments else None
    for seg in log.segments:
        file = seg.file
        if seg.dirty and file is not None:
            ticket.files.append(file)
            ticket.marks.append((seg, seg.size))
            ticket.size += min(seg.size, ticket.appended) if seg is active else seg.size
    return ticket


def complete_flush(ticket: FlushTicket) -> None:
    log = ticket.log
    for seg, size in ticket.marks:
        if seg.size == size:
            seg.dirty = False
    log.recovery_point = max(log.recovery_point, min(ticket.end_offset, log.log_end_offset))
    # Appends made while the fsync ran are still to sync: they count
    # toward the next flush.messages, as Kafka's count (log end offset
    # less recovery point) has them.
    log.unflushed_messages = max(0, log.unflushed_messages - ticket.messages)
    log.unflushed_bytes = max(0, log.unflushed_bytes - ticket.appended)
    log.last_flush_ms = now_ms()


def abort_flush(ticket: FlushTicket, error: OSError) -> KafkaStorageError:
    """After a failed sync (owner thread): the log's directory goes offline.
    Returns the error for those who waited on the flush."""
    ticket.log._dirs_to_sync.update(ticket.dirs)
    return ticket.log.io_failed(error)
