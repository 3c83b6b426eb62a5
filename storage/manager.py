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
            partition.metadata               the id of the topic the log belongs to

A partition dir is matched to its topic by name and, when the caller
gives topic ids, by the id in its partition.metadata: a log of another
topic that had the same name (deleted, then re-created while this broker
was not looking) is moved aside as a stray, never served, never deleted.

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
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from .checkpoint import CheckpointError, read_offsets, write_atomically, write_offsets
from .config import LogConfig
from .dirs import DirLock, LogDirError, move_aside
from .flush import FlushTimes
from .log import KafkaStorageError, PartitionLog, parse_partition_dir
from .partition_metadata import InconsistentTopicIdError

CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_FILE = "log-start-offset-checkpoint"
HIGH_WATERMARK_FILE = "replication-offset-checkpoint"
CLEANER_FILE = "cleaner-offset-checkpoint"
DELETE_SUFFIX = "-delete"  # a deleted partition's directory while its files go

TopicPartition = tuple[str, int]


class ForeignLog(NamedTuple):
    """A log found under a topic's name that belongs to another topic id."""

    partition: TopicPartition
    stray: Path  # where it was moved
    stored_id: uuid.UUID  # the id its partition.metadata names
    topic_id: uuid.UUID  # the id of the topic now holding the name


class LogManager:
    def __init__(
        self,
        log_dirs: list[os.PathLike],
        config_for: Callable[[str], LogConfig] | None = None,
        known: Callable[[TopicPartition], bool] | None = None,
        locks: list[DirLock] | None = None,
        topic_id: Callable[[str], uuid.UUID | None] | None = None,
    ):
        """Open every partition log in ``log_dirs``; with ``known``, only
        those it accepts: the others are moved aside unopened (``strays``).
        With ``topic_id`` (a topic's name -> its id), a log recording
        another id is moved aside unopened too (``foreign``), and one
        recording none is given its topic's. ``locks``, the dirs' locks
        taken by the caller, are held until ``close``, as Kafka's
        LogManager holds them."""
        self.locks = locks or []
        self.log_dirs = [Path(d) for d in log_dirs]
        self.config_for = config_for or (lambda topic: LogConfig())
        self.logs: dict[TopicPartition, PartitionLog] = {}
        self._dir_of: dict[TopicPartition, Path] = {}
        self._counts = {d: 0 for d in self.log_dirs}  # partitions per dir
        self.unclean_dirs: list[Path] = []
        self.strays: list[Path] = []
        self.foreign: list[ForeignLog] = []
        self.failed_dirs: dict[Path, str] = {}  # offline log dirs -> why
        # Called (dir, cause, partitions in it) when a log dir goes offline.
        self.on_dir_failure: Callable[[Path, str, list[TopicPartition]], None] | None = None
        self._topic_id = topic_id or (lambda topic: None)
        # The flush policy's fsyncs (flush_dirty), timed for the metrics.
        self.flush_times = FlushTimes()
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
        moved_before = len(self.strays) + len(self.foreign)
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
            try:
                log = PartitionLog(
                    sub,
                    self.config_for(tp[0]),
                    recovery_point=recovery.get(tp, 0),
                    log_start_offset=starts.get(tp, 0),
                    high_watermark=hws.get(tp),
                    cleaner_offset=cleaned.get(tp, 0),
                    clean=clean,
                    topic_id=self._topic_id(tp[0]),
                )
            except InconsistentTopicIdError as exc:
                self.foreign.append(ForeignLog(tp, move_aside(sub), exc.stored, exc.wanted))
                continue
            except CheckpointError as exc:
                # Whose log this is, or where its epochs start, is unknown:
                # the operator's to decide, not a guess of ours.
                raise LogDirError(
                    f"cannot open the log in {sub}: {exc}. Repair the file, or move the directory out of "
                    f"{d}, before starting the broker again."
                ) from None
            self._add(tp, log, d)
        if len(self.strays) + len(self.foreign) > moved_before:
            # The offsets of the logs moved aside go now: a crash before the
            # next checkpoint must not give them to a log made under the
            # same name meanwhile (a recovery point it never reached).
            self._checkpoint_dir(d)
        if clean:
            marker.unlink()
            _fsync_dir(d)

    def _add(self, tp: TopicPartition, log: PartitionLog, d: Path) -> None:
        self.logs[tp] = log
        self._dir_of[tp] = d
        self._counts[d] += 1
        log.on_io_error = self._log_failed

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self.logs.get((topic, partition))

    def create(
        self, topic: str, partition: int, config: LogConfig | None = None, topic_id: uuid.UUID | None = None
    ) -> PartitionLog:
        """A new partition's log, in the online log dir holding the fewest."""
        tp = (topic, partition)
        if tp in self.logs:
            return self.logs[tp]
        (d,) = self.place(1)
        log = open_new_log(d / f"{topic}-{partition}", config or self.config_for(topic), topic_id)
        self.adopt(tp, log)
        return log

    def place(self, count: int) -> list[Path]:
        """Online log dirs for ``count`` new partitions, each to the dir
        holding the fewest (Kafka's rule), counting the ones placed before it."""
        online = self.online_dirs
        if not online:
            raise KafkaStorageError("no log directory is online to hold new partitions")
        counts = {d: self._counts[d] for d in online}
        out = []
        for _ in range(count):
            d = min(online, key=counts.__getitem__)
            counts[d] += 1
            out.append(d)
        return out

    def adopt(self, tp: TopicPartition, log: PartitionLog) -> None:
        """Take over a log made by ``open_new_log(s)`` (in any thread)."""
        self._add(tp, log, log.directory.parent)

    def delete(self, topic: str, partition: int) -> None:
        path = self.detach(topic, partition)
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)

    def detach(self, topic: str, partition: int) -> Path | None:
        """Close a partition's log and rename its directory to Kafka's
        ``<topic>-<partition>.<id>-delete``, so the name is free at once and
        the files can be removed later, off the owner thread
        (``remove_detached``). Returns the renamed directory."""
        tp = (topic, partition)
        log = self.logs.pop(tp, None)
        d = self._dir_of.pop(tp, None)
        if log is None:
            return None
        self._counts[d] -= 1
        try:
            log.close(trim=log.offline is None)
            target = log.directory.with_name(f"{log.directory.name}.{uuid.uuid4().hex}{DELETE_SUFFIX}")
            os.rename(log.directory, target)
        except OSError:
            # A failed dir, or files gone already: what is left is removed by name.
            return log.directory if log.directory.exists() else None
        return target

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
                started = time.perf_counter()
                try:
                    if log.flush():
                        n += 1
                        self.flush_times.observe(time.perf_counter() - started)
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
        written to it: the next start recovers its logs. Then the dirs'
        locks go."""
        try:
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
        finally:
            for lock in self.locks:
                lock.release()

    def _close_dir(self, d: Path) -> None:
        mine = self._logs_in(d).values()
        for log in mine:
            log.flush()
        self._checkpoint_dir(d)
        for log in mine:
            log.close()
        write_atomically(d / CLEAN_SHUTDOWN_FILE, b'{"version":0,"brokerEpoch":-1}')


def open_new_log(path: Path, config: LogConfig, topic_id: uuid.UUID | None = None) -> PartitionLog:
    """A new partition's log (any thread), recording ``topic_id``. On
    failure (out of descriptors or disk) no half-made partition is left
    for the next start to find."""
    existed = path.exists()
    try:
        return PartitionLog(path, config, topic_id=topic_id)
    except OSError:
        if not existed:
            shutil.rmtree(path, ignore_errors=True)
        raise


def open_new_logs(paths: list[Path], config: LogConfig, topic_id: uuid.UUID | None = None) -> list[PartitionLog]:
    """New logs for ``paths`` (of the topic ``topic_id``), all or none (any thread)."""
    made: list[PartitionLog] = []
    try:
        for path in paths:
            made.append(open_new_log(path, config, topic_id))
    except BaseException:
        discard_new_logs(made)
        raise
    return made


def discard_new_logs(logs: list[PartitionLog]) -> None:
    """Undo ``open_new_logs`` for logs never adopted."""
    for log in logs:
        log.delete()


def remove_detached(paths: list[Path]) -> None:
    """Remove directories ``detach`` renamed (any thread)."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
