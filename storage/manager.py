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

A log directory that hits an I/O error (a full or failing disk) goes
offline for the rest of the process, as Kafka's LogDirFailureChannel takes
it: its logs refuse every operation (KafkaStorageError), get no flush,
checkpoint or clean-shutdown marker (so the next start recovers them), new
partitions go to the other directories, and ``on_dir_failure`` tells the
broker, which stops once no directory is left.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .checkpoint import read_offsets, write_atomically, write_offsets
from .config import LogConfig
from .log import KafkaStorageError, PartitionLog, parse_partition_dir

CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_FILE = "log-start-offset-checkpoint"
HIGH_WATERMARK_FILE = "replication-offset-checkpoint"
CLEANER_FILE = "cleaner-offset-checkpoint"

TopicPartition = tuple[str, int]


class LogManager:
    def __init__(self, log_dirs: list[os.PathLike], config_for: Callable[[str], LogConfig] | None = None):
        self.log_dirs = [Path(d) for d in log_dirs]
        self.config_for = config_for or (lambda topic: LogConfig())
        self.logs: dict[TopicPartition, PartitionLog] = {}
        self._dir_of: dict[TopicPartition, Path] = {}
        self.unclean_dirs: list[Path] = []
        self.failed_dirs: dict[Path, str] = {}  # offline log dirs -> why
        # Called (dir, cause, partitions in it) when a log dir goes offline.
        self.on_dir_failure: Callable[[Path, str, list[TopicPartition]], None] | None = None
        for d in self.log_dirs:
            self._open_dir(d)

    def _open_dir(self, d: Path) -> None:
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
                continue  # not ours (e.g. a deleted partition's leftovers)
            if tp in self.logs:
                raise RuntimeError(f"partition {tp[0]}-{tp[1]} exists in two log dirs")
            log = PartitionLog(
                sub,
                self.config_for(tp[0]),
                recovery_point=recovery.get(tp, 0),
                log_start_offset=starts.get(tp, 0),
                high_watermark=hws.get(tp),
                cleaner_offset=cleaned.get(tp, 0),
                clean=clean,
            )
            self._add(tp, log, d)
        if clean:
            marker.unlink()
            _fsync_dir(d)

    def _add(self, tp: TopicPartition, log: PartitionLog, d: Path) -> None:
        self.logs[tp] = log
        self._dir_of[tp] = d
        log.on_io_error = self._log_failed

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self.logs.get((topic, partition))

    def create(self, topic: str, partition: int, config: LogConfig | None = None) -> PartitionLog:
        """A new partition's log, in the online log dir holding the fewest."""
        tp = (topic, partition)
        if tp in self.logs:
            return self.logs[tp]
        online = self.online_dirs
        if not online:
            raise KafkaStorageError(f"no log directory is online to hold {topic}-{partition}")
        counts = {d: 0 for d in online}
        for owner in self._dir_of.values():
            if owner in counts:
                counts[owner] += 1
        d = min(online, key=lambda x: counts[x])
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
        self._add(tp, log, d)
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

    # -- failed log dirs -------------------------------------------------------

    @property
    def online_dirs(self) -> list[Path]:
        return [d for d in self.log_dirs if d not in self.failed_dirs]

    def dir_failure(self, d: os.PathLike) -> str | None:
        """Why log dir ``d`` is offline; None while it is online."""
        return self.failed_dirs.get(Path(d))

    def fail_dir(self, d: Path, cause: str) -> None:
        """Take log dir ``d`` offline: its logs refuse all work from now on
        and are closed without writing anything more to the directory."""
        if d in self.failed_dirs:
            return
        self.failed_dirs[d] = cause
        gone = [tp for tp, owner in self._dir_of.items() if owner == d]
        for tp in gone:
            log = self.logs[tp]
            log.offline = cause
            try:
                log.close(trim=False)
            except OSError:
                pass  # the directory has failed already
        if self.on_dir_failure is not None:
            self.on_dir_failure(d, cause, gone)

    def _log_failed(self, log: PartitionLog, cause: str) -> None:
        d = self._dir_of.get((log.topic, log.partition))
        if d is not None and self.logs.get((log.topic, log.partition)) is log:
            self.fail_dir(d, cause)

    def _logs_in(self, d: Path) -> dict[TopicPartition, PartitionLog]:
        return {tp: log for tp, log in self.logs.items() if self._dir_of[tp] == d}

    # -- periodic work ---------------------------------------------------------

    def flush_dirty(self, force: bool = False) -> int:
        """fsync every log with unflushed data (all of them when ``force``,
        else those due under flush.messages / flush.ms). One call is one group
        commit for everything appended before it. Returns logs flushed."""
        n = 0
        for log in list(self.logs.values()):
            if log.offline is None and (force or log.needs_flush()):
                try:
                    n += log.flush()
                except KafkaStorageError:
                    pass  # its directory is offline now
        return n

    def delete_expired(self, now: int | None = None, skip: frozenset = frozenset()) -> int:
        """One retention pass (log.retention.check.interval.ms apart), except
        for the partitions in ``skip`` (those being compacted right now)."""
        deleted = 0
        for tp, log in list(self.logs.items()):
            if tp not in skip and log.offline is None:
                try:
                    deleted += len(log.delete_expired_segments(now))
                except KafkaStorageError:
                    pass  # its directory is offline now
        return deleted

    def checkpoint(self) -> None:
        """Write the offset checkpoints of every online log dir; a dir whose
        write fails goes offline."""
        for d in self.online_dirs:
            try:
                self._checkpoint_dir(d)
            except OSError as exc:
                self.fail_dir(d, str(exc))

    def _checkpoint_dir(self, d: Path) -> None:
        mine = self._logs_in(d)
        write_offsets(d / RECOVERY_POINT_FILE, {tp: log.recovery_point for tp, log in mine.items()})
        write_offsets(d / LOG_START_FILE, {tp: log.log_start_offset for tp, log in mine.items()})
        write_offsets(d / HIGH_WATERMARK_FILE, {tp: log.high_watermark for tp, log in mine.items()})
        compacted = {tp: log.cleaner_offset for tp, log in mine.items() if log.config.compact}
        write_offsets(d / CLEANER_FILE, compacted)

    def close(self) -> None:
        """Clean stop, dir by dir: flush, checkpoint, close, then leave the
        marker. A failed dir (before or now) gets no marker, and nothing is
        written to it: the next start recovers its logs."""
        for d in self.log_dirs:
            if d not in self.failed_dirs:
                try:
                    self._close_dir(d)
                    continue
                except OSError as exc:
                    self.fail_dir(d, str(exc))
            for log in self._logs_in(d).values():
                try:
                    log.close(trim=False)
                except OSError:
                    pass

    def _close_dir(self, d: Path) -> None:
        mine = self._logs_in(d).values()
        for log in mine:
            log.flush()
        self._checkpoint_dir(d)
        for log in mine:
            log.close()
        write_atomically(d / CLEAN_SHUTDOWN_FILE, b'{"version":0,"brokerEpoch":-1}')


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
