"""I/O errors in a log directory: a write torn by a full disk, a failed
fsync or checkpoint. The segment cuts a torn append back, the log and its
whole directory go offline (every later operation raises
KafkaStorageError), nothing more is written there, and the next start
recovers the directory: every append that returned is there, once, and
new appends continue right after it.

Faults are injected by wrapping the ``os`` calls the storage makes, for
files under one directory only (found through /proc/self/fd).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pybroker.protocol.record_batch import iter_batches
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.storage.config import LogConfig
from pybroker.storage.flush import abort_flush, begin_flush, complete_flush
from pybroker.storage.log import KafkaStorageError, PartitionLog
from pybroker.storage.manager import CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_FILE, LogManager
from pybroker.storage.segment import BatchInfo, LogSegment

T0 = 1_700_000_000_000


def batch(i: int, size: int = 200) -> bytes:
    return build_batch([NewRecord(b"k%d" % i, bytes([i % 251]) * size, (), T0 + i)])


def config_for(topic: str) -> LogConfig:
    return LogConfig(segment_bytes=1 << 20, index_interval_bytes=500)


def values(log: PartitionLog) -> list[bytes]:
    """Every record value from the log start to the log end."""
    out = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        data = log.read(offset, 1 << 20, log.log_end_offset).data
        for b in iter_batches(bytes(data)):
            out += [r.value for r in b.records() if r.offset >= offset]
            offset = b.last_offset + 1
    return out


def _path_of(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


class Disk:
    """Faults for files under ``root``: ``room`` bytes more may be written
    (then a write takes what fits and the next fails with ENOSPC), and
    ftruncate / fsync can be made to fail with EIO."""

    def __init__(self, monkeypatch, root: Path):
        self.root = str(root)
        self.room: int | None = None
        self.truncate_fails = False
        self.fsync_fails = False
        real_pwrite, real_write, real_ftruncate, real_fsync = os.pwrite, os.write, os.ftruncate, os.fsync

        def ours(fd: int) -> bool:
            return _path_of(fd).startswith(self.root)

        def take(fd: int, data) -> int:
            if self.room is None or not ours(fd):
                return len(data)
            if self.room == 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            n = min(self.room, len(data))
            self.room -= n
            return n

        def pwrite(fd, data, offset):
            return real_pwrite(fd, memoryview(data)[: take(fd, data)], offset)

        def write(fd, data):
            return real_write(fd, memoryview(data)[: take(fd, data)])

        def ftruncate(fd, length):
            if self.truncate_fails and ours(fd):
                raise OSError(errno.EIO, "Input/output error")
            return real_ftruncate(fd, length)

        def fsync(fd):
            if self.fsync_fails and ours(fd):
                raise OSError(errno.EIO, "Input/output error")
            return real_fsync(fd)

        monkeypatch.setattr(os, "pwrite", pwrite)
        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "ftruncate", ftruncate)
        monkeypatch.setattr(os, "fsync", fsync)

    def heal(self) -> None:
        self.room = None
        self.truncate_fails = self.fsync_fails = False


def open_segment(d: Path) -> LogSegment:
    return LogSegment(d, 0, index_bytes=4096, index_interval=500)


def append_to(seg: LogSegment, i: int) -> None:
    data = bytearray(batch(i))
    b = next(iter_batches(data))
    b.set_base_offset(seg.next_offset)
    seg.append(data, [BatchInfo(0, b.base_offset, b.last_offset, len(data), b.max_timestamp)])


def test_a_short_write_is_cut_back_and_the_next_append_follows_the_last_batch(tmp_path, monkeypatch):
    disk = Disk(monkeypatch, tmp_path)
    seg = open_segment(tmp_path)
    for i in range(5):
        append_to(seg, i)
    size, end = seg.size, seg.next_offset
    state = (seg.max_timestamp, seg.offset_of_max_timestamp)
    disk.room = 100  # less than a batch: the write is torn
    with pytest.raises(OSError) as err:
        append_to(seg, 5)
    assert err.value.errno == errno.ENOSPC
    assert seg.path.stat().st_size == seg.size == size
    assert (seg.next_offset, seg.max_timestamp, seg.offset_of_max_timestamp) == (end, *state)
    disk.heal()
    append_to(seg, 6)
    seg.close()
    again = open_segment(tmp_path)
    assert again.load() == 0
    assert again.next_offset == end + 1
    got = list(iter_batches(again.read_at(0, again.size)))
    assert [b.base_offset for b in got] == list(range(6))
    assert [r.value[0] for b in got for r in b.records()] == [0, 1, 2, 3, 4, 6]
    again.close()


def test_a_clean_start_recovers_a_file_that_ends_inside_a_batch(tmp_path):
    """The reproduction of a torn write surviving a graceful stop: the
    marker is there, the file ends in garbage. Appends after the restart
    must not land after the garbage, and a crash after them loses nothing."""
    mgr = LogManager([tmp_path], config_for)
    log = mgr.create("t", 0)
    for i in range(10):
        log.append(batch(i), now=T0)
    mgr.close()
    segment = tmp_path / "t-0" / f"{0:020d}.log"
    with open(segment, "ab") as f:
        f.write(batch(99)[:150])
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()

    mgr = LogManager([tmp_path], config_for)
    assert mgr.unclean_dirs == []
    log = mgr.get("t", 0)
    assert log.log_end_offset == 10 and log.recovered_bytes == 150
    for i in range(10, 15):
        assert log.append(batch(i), now=T0).base_offset == i
    # kill -9: no close, no checkpoint.
    crashed = LogManager([tmp_path], config_for)
    log = crashed.get("t", 0)
    assert values(log) == [bytes([i]) * 200 for i in range(15)]
    crashed.close()


def test_a_torn_write_takes_the_dir_offline_and_the_next_start_recovers_it(tmp_path, monkeypatch):
    disk = Disk(monkeypatch, tmp_path)
    failures = []
    mgr = LogManager([tmp_path], config_for)
    mgr.on_dir_failure = lambda d, cause, tps: failures.append((d, cause, tps))
    log = mgr.create("t", 0)
    for i in range(10):
        log.append(batch(i), now=T0)
    mgr.checkpoint()
    disk.room = 120
    disk.truncate_fails = True  # the torn bytes stay in the file
    with pytest.raises(KafkaStorageError, match="offline log directory"):
        log.append(batch(10), now=T0)
    assert [(d, tps) for d, _, tps in failures] == [(tmp_path, [("t", 0)])]
    assert "No space left" in failures[0][1] and "No space left" in mgr.dir_failure(tmp_path)
    assert mgr.online_dirs == []
    disk.heal()
    # Offline: nothing reads or writes it any more, not even the periodic work.
    for attempt in (
        lambda: log.append(batch(11), now=T0),
        lambda: log.read(0, 1000, 10),
        lambda: log.offset_for_timestamp(T0),
        lambda: log.delete_records(1),
        lambda: log.flush(),
        log.check_online,
    ):
        with pytest.raises(KafkaStorageError):
            attempt()
    with pytest.raises(KafkaStorageError):
        mgr.create("u", 0)
    assert mgr.flush_dirty(force=True) == 0
    checkpoint = (tmp_path / RECOVERY_POINT_FILE).read_bytes()
    mgr.checkpoint()
    mgr.close()
    assert (tmp_path / RECOVERY_POINT_FILE).read_bytes() == checkpoint
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    assert len(failures) == 1

    again = LogManager([tmp_path], config_for)
    assert again.unclean_dirs == [tmp_path]
    log = again.get("t", 0)
    assert log.recovered_bytes == 120 and log.log_end_offset == 10
    for i in range(10, 13):
        assert log.append(batch(i), now=T0).base_offset == i
    crashed = LogManager([tmp_path], config_for)
    assert values(crashed.get("t", 0)) == [bytes([i]) * 200 for i in range(13)]
    crashed.close()


def test_a_failed_dir_leaves_the_other_one_working(tmp_path, monkeypatch):
    good, bad = tmp_path / "good", tmp_path / "bad"
    disk = Disk(monkeypatch, bad)
    mgr = LogManager([good, bad], config_for)
    a, b = mgr.create("a", 0), mgr.create("b", 0)
    assert a.directory.parent == good and b.directory.parent == bad
    b.append(batch(0), now=T0)
    disk.room = 0
    with pytest.raises(KafkaStorageError):
        b.append(batch(1), now=T0)
    assert mgr.online_dirs == [good] and mgr.dir_failure(bad) is not None and mgr.dir_failure(good) is None
    disk.heal()
    assert a.append(batch(2), now=T0).base_offset == 0
    assert values(a) == [bytes([2]) * 200]
    c = mgr.create("c", 0)
    assert c.directory.parent == good  # new partitions avoid the failed dir
    mgr.checkpoint()
    mgr.close()
    assert (good / CLEAN_SHUTDOWN_FILE).exists() and not (bad / CLEAN_SHUTDOWN_FILE).exists()
    again = LogManager([good, bad], config_for)
    assert again.unclean_dirs == [bad]
    assert values(again.get("b", 0)) == [bytes([0]) * 200]
    assert values(again.get("a", 0)) == [bytes([2]) * 200]
    again.close()


def test_a_checkpoint_write_failure_takes_only_its_dir_offline(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    mgr = LogManager([good, bad], config_for)
    a, b = mgr.create("a", 0), mgr.create("b", 0)
    a.append(batch(0), now=T0)
    b.append(batch(1), now=T0)
    a.flush()
    # Where the checkpoint's temporary file must go there is a directory.
    (bad / f"{RECOVERY_POINT_FILE}.tmp").mkdir()
    mgr.checkpoint()  # does not raise
    assert mgr.online_dirs == [good] and b.offline is not None and a.offline is None
    assert (good / RECOVERY_POINT_FILE).read_text().splitlines()[2] == "a 0 1"
    assert a.append(batch(2), now=T0).base_offset == 1
    mgr.close()


def test_a_failed_fsync_takes_the_dir_offline(tmp_path, monkeypatch):
    disk = Disk(monkeypatch, tmp_path)
    mgr = LogManager([tmp_path], config_for)
    log = mgr.create("t", 0)
    log.append(batch(0), now=T0)
    ticket = begin_flush(log)
    disk.fsync_fails = True
    with pytest.raises(OSError) as err:
        ticket.sync()
    error = abort_flush(ticket, err.value)
    assert isinstance(error, KafkaStorageError) and "Input/output error" in str(error)
    assert mgr.online_dirs == [] and log.recovery_point == 0
    with pytest.raises(KafkaStorageError):
        begin_flush(log)
    disk.heal()
    mgr.close()
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_flush_outlives_the_segments_it_covers(tmp_path):
    """A topic deleted while its acks=all flush waits for the worker thread:
    the fsync goes through the file the ticket holds, never a closed (or
    reused) descriptor, and the file is released when the ticket goes."""
    mgr = LogManager([tmp_path], config_for)
    log = mgr.create("t", 0)
    log.append(batch(0), now=T0)
    before = _open_fds()
    ticket = begin_flush(log)
    mgr.delete("t", 0)
    assert _open_fds() == before  # still held by the ticket
    ticket.sync()
    complete_flush(ticket)
    del ticket
    assert _open_fds() == before - 1
    # Begun after the delete: nothing left to sync, and nothing fails.
    later = begin_flush(log)
    assert later.files == []
    later.sync()
    complete_flush(later)
    mgr.close()


def test_an_offline_log_is_closed_without_writing(tmp_path, monkeypatch):
    disk = Disk(monkeypatch, tmp_path)
    mgr = LogManager([tmp_path], lambda topic: LogConfig())
    log = mgr.create("t", 0)
    for i in range(30):  # enough for an index entry, still pending in memory
        log.append(batch(i), now=T0)
    index = log.active.offset_index.path
    size = index.stat().st_size
    disk.room = 0
    with pytest.raises(KafkaStorageError):
        log.append(batch(30), now=T0)
    disk.heal()
    mgr.close()
    assert index.stat().st_size == size  # not trimmed, nothing flushed
    assert log.active.file is None


def test_a_flush_ticket_sizes_what_its_fsync_may_write(tmp_path):
    log = PartitionLog(tmp_path / "t-0", LogConfig(segment_bytes=4096))
    first = len(batch(0, 1500))
    log.append(batch(0, 1500), now=T0)
    assert log.unflushed_bytes == first
    ticket = begin_flush(log)
    assert ticket.size == first
    log.append(batch(1, 1500), now=T0)  # while the fsync runs
    ticket.sync()
    complete_flush(ticket)
    assert log.unflushed_bytes == first  # the second append is still to sync
    log.flush()
    assert log.unflushed_bytes == 0
    log.close()
    log = PartitionLog(tmp_path / "u-0", LogConfig(segment_bytes=4096))
    log.append(batch(0, 1500), now=T0)
    log.flush()
    log.append(batch(1, 1500), now=T0)
    log.append(batch(2, 1500), now=T0)  # rolls, leaving the old segment dirty
    old, active = log.segments
    assert log.unflushed_bytes == 2 * first
    ticket = begin_flush(log)
    assert ticket.size == old.size + active.size == 3 * first  # the old one whole: an upper bound
    ticket.sync()
    complete_flush(ticket)
    assert log.unflushed_bytes == 0
    log.close()


def test_appends_made_during_a_flush_count_toward_the_next_flush_messages(tmp_path):
    """flush.messages counts what is not synced yet (Kafka: log end offset
    less recovery point): a flush ticket clears only what it covered."""
    log = PartitionLog(tmp_path / "t-0", LogConfig(flush_messages=3))
    log.append(batch(0), now=T0)
    ticket = begin_flush(log)
    log.append(batch(1), now=T0)  # while the fsync runs
    ticket.sync()
    complete_flush(ticket)
    assert log.unflushed_messages == 1
    assert log.recovery_point == 1
    log.append(batch(2), now=T0)
    assert log.recovery_point == 1
    log.append(batch(3), now=T0)  # the third unsynced message: flush.messages reached
    assert log.unflushed_messages == 0
    assert log.recovery_point == 4
    log.close()
