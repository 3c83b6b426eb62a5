"""All partition logs of a broker, across its log directories.

On-disk layout (Kafka's)::

    <log.dir>/
        meta.properties                      broker and cluster id (the broker writes it)
        .kafka_cleanshutdown                 present only between a clean stop and the next start
        recovery-point-offset-checkpoint     per partition: offsets known to be fsynced
        log-start-offset-checkpoint          per partition: first offset still readable
        replication-offset-checkpoint        per partition: high watermark
        cleaner-offset-checkpoint            per compacted partition: first offset not yet cleaned
        <topic>-<partition>/
            00000000000000000000.log         record batches, as received
            00000000000000000000.index       int32 relative offset, int32 position
            00000000000000000000.timeindex   int64 timestamp, int32 relative offset
            leader-epoch-checkpoint          epoch -> start offset

Checkpoint files are replaced atomically (write, fsync, rename, fsync the
directory). The clean-shutdown marker is removed as soon as the logs are
open, so a crash at any later point is treated as unclean at the next start:
segments past the recovery point are then scanned and their torn tails cut.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .checkpoint import read_offsets, write_atomically, write_offsets
from .config import LogConfig
from .dirs import DirLock, LogDirError, move_aside
from .log import PartitionLog, parse_partition_dir

CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_FILE = "log-start-offset-checkpoint"
HIGH_WATERMARK_FILE = "replication-offset-checkpoint"
CLEANER_FILE = "cleaner-offset-checkpoint"

TopicPartition = tuple[str, int]


class LogManager:
    def __init__(
        self,
        log_dirs: list[os.PathLike],
        config_for: Callable[[str], LogConfig] | None = None,
        known: Callable[[TopicPartition], bool] | None = None,
        locks: list[DirLock] | None = None,
    ):
        """Open every partition log in ``log_dirs``; with ``known``, only
        those it accepts: the others are moved aside unopened (``strays``).
        ``locks``, the dirs' locks taken by the caller, are held until
        ``close``, as Kafka's LogManager holds them."""
        self.locks = locks or []
        self.log_dirs = [Path(d) for d in log_dirs]
        self.config_for = config_for or (lambda topic: LogConfig())
        self.logs: dict[TopicPartition, PartitionLog] = {}
        self._dir_of: dict[TopicPartition, Path] = {}
        self.unclean_dirs: list[Path] = []
        self.strays: list[Path] = []
        for d in self.log_dirs:
            self._open_dir(d, known)

    def _open_dir(self, d: Path, known: Callable[[TopicPartition], bool] | None) -> None:
        d.mkdir(parents=True, exist_ok=True)
        marker = d / CLEAN_SHUTDOWN_FILE
        clean = marker.exists()
        # One directory listing, and the entry types it carries: a stat per
        # partition directory is most of the start-up time with thousands.
        with os.scandir(d) as it:
            subdirs = sorted(Path(e.path) for e in it if e.is_dir())
        if not clean and subdirs:
            self.unclean_dirs.append(d)
        recovery = read_offsets(d / RECOVERY_POINT_FILE)
        starts = read_offsets(d / LOG_START_FILE)
        hws = read_offsets(d / HIGH_WATERMARK_FILE)
        cleaned = read_offsets(d / CLEANER_FILE)
        for sub in subdirs:
            try:
                tp = parse_partition_dir(sub.name)
            except ValueError:
                continue  # not a partition (a stray moved aside earlier, say)
            if known is not None and not known(tp):
                self.strays.append(move_aside(sub))
                continue
            if tp in self.logs:
                raise LogDirError(
                    f"Duplicate log directories for {tp[0]}-{tp[1]} are found in both {self._dir_of[tp]} "
                    f"and {d}. Remove the one that is not current before starting the broker again."
                )
            self.logs[tp] = PartitionLog(
                sub,
                self.config_for(tp[0]),
                recovery_point=recovery.get(tp, 0),
                log_start_offset=starts.get(tp, 0),
                high_watermark=hws.get(tp),
                cleaner_offset=cleaned.get(tp, 0),
                clean=clean,
            )
            self._dir_of[tp] = d
        if clean:
            marker.unlink()
            _fsync_dir(d)

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self.logs.get((topic, partition))

    def create(self, topic: str, partition: int, config: LogConfig | None = None) -> PartitionLog:
        tp = (topic, partition)
        if tp in self.logs:
            return self.logs[tp]
        counts = {d: 0 for d in self.log_dirs}
        for owner in self._dir_of.values():
            counts[owner] += 1
        d = min(self.log_dirs, key=lambda x: counts[x])
        path = d / f"{topic}-{partition}"
        existed = path.exists()
        try:
            log = PartitionLog(path, config or self.config_for(topic))
        except OSError:
            # Out of descriptors or disk: leave no half-made partition behind
            # for the next start to pick up as data.
            if not existed:
                shutil.rmtree(path, ignore_errors=True)
            raise
        self.logs[tp] = log
        self._dir_of[tp] = d
        return log

    def delete(self, topic: str, partition: int) -> None:
        tp = (topic, partition)
        log = self.logs.pop(tp, None)
        self._dir_of.pop(tp, None)
        if log is not None:
            log.delete()

    def update_config(self, topic: str, config: LogConfig) -> None:
        for (t, _), log in self.logs.items():
            if t == topic:
                log.config = config

    # -- periodic work ---------------------------------------------------------

    def flush_dirty(self, force: bool = False) -> int:
        """fsync every log with unflushed data (all of them when ``force``,
        else those due under flush.messages / flush.ms). One call is one group
        commit for everything appended before it. Returns logs flushed."""
        n = 0
        for log in self.logs.values():
            if (force or log.needs_flush()) and log.flush():
                n += 1
        return n

    def delete_expired(self, now: int | None = None, skip: frozenset = frozenset()) -> int:
        """One retention pass (log.retention.check.interval.ms apart), except
        for the partitions in ``skip`` (those being compacted right now)."""
        return sum(len(log.delete_expired_segments(now)) for tp, log in self.logs.items() if tp not in skip)

    def checkpoint(self) -> None:
        for d in self.log_dirs:
            mine = {tp: log for tp, log in self.logs.items() if self._dir_of[tp] == d}
            write_offsets(d / RECOVERY_POINT_FILE, {tp: log.recovery_point for tp, log in mine.items()})
            write_offsets(d / LOG_START_FILE, {tp: log.log_start_offset for tp, log in mine.items()})
            write_offsets(d / HIGH_WATERMARK_FILE, {tp: log.high_watermark for tp, log in mine.items()})
            compacted = {tp: log.cleaner_offset for tp, log in mine.items() if log.config.compact}
            write_offsets(d / CLEANER_FILE, compacted)

    def close(self) -> None:
        """Clean stop: flush, checkpoint, close, then leave the marker."""
        try:
            for log in self.logs.values():
                log.flush()
            self.checkpoint()
            for log in self.logs.values():
                log.close()
            for d in self.log_dirs:
                write_atomically(d / CLEAN_SHUTDOWN_FILE, b'{"version":0,"brokerEpoch":-1}')
        finally:
            for lock in self.locks:
                lock.release()


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
