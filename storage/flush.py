"""fsync without holding up the thread that owns the log.

``begin_flush`` (owner thread) duplicates the descriptors of the segments
with unsynced data and notes how far each had grown; ``FlushTicket.sync``
(any thread) fsyncs and closes those duplicates, touching no log state, so
appends go on meanwhile and a segment deleted in between is harmless; then
``complete_flush`` (owner thread) marks clean what the fsync covered and
moves the recovery point. Indexes are not synced here: recovery rebuilds
them from the data past the recovery point, as Kafka's does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .log import PartitionLog, now_ms
from .segment import LogSegment


@dataclass
class FlushTicket:
    log: PartitionLog
    end_offset: int
    fds: list[int] = field(default_factory=list)
    marks: list[tuple[LogSegment, int]] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)  # holding new segment files

    def sync(self) -> None:
        try:
            for fd in self.fds:
                os.fsync(fd)
            for d in self.dirs:
                dfd = os.open(d, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        finally:
            for fd in self.fds:
                os.close(fd)
            self.fds = []


def begin_flush(log: PartitionLog) -> FlushTicket:
    ticket = FlushTicket(log, log.log_end_offset)
    # A segment file whose directory entry is not synced can vanish in a
    # power loss even though its data was fsynced.
    ticket.dirs = list(log._dirs_to_sync)
    log._dirs_to_sync.clear()
    for seg in log.segments:
        if seg.dirty:
            ticket.fds.append(os.dup(seg.fileno()))
            ticket.marks.append((seg, seg.size))
    return ticket


def complete_flush(ticket: FlushTicket) -> None:
    log = ticket.log
    for seg, size in ticket.marks:
        if seg.size == size:
            seg.dirty = False
    log.recovery_point = max(log.recovery_point, min(ticket.end_offset, log.log_end_offset))
    log.unflushed_messages = 0
    log.last_flush_ms = now_ms()


def abort_flush(ticket: FlushTicket) -> None:
    """After a failed sync (owner thread): the directories are synced again next time."""
    ticket.log._dirs_to_sync.update(ticket.dirs)
