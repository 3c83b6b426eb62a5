"""LogManager: log directories, the checkpoints and the clean-shutdown marker."""

from __future__ import annotations

import pytest

from pybroker.protocol.records import NewRecord, build_batch
from pybroker.storage.checkpoint import read_offsets, write_offsets
from pybroker.storage.config import LogConfig
from pybroker.storage.dirs import LogDirError
from pybroker.storage.manager import (
    CLEAN_SHUTDOWN_FILE,
    HIGH_WATERMARK_FILE,
    LOG_START_FILE,
    RECOVERY_POINT_FILE,
    LogManager,
)

T0 = 1_700_000_000_000


def batch(n=2, ts=T0):
    return build_batch([NewRecord(b"k", b"v" * 30, (), ts) for _ in range(n)])


def small(topic):
    return LogConfig(segment_bytes=300, retention_ms=1000)


def test_create_get_and_reopen_clean(tmp_path):
    mgr = LogManager([tmp_path], small)
    a = mgr.create("a", 0)
    assert mgr.create("a", 0) is a and mgr.get("a", 0) is a and mgr.get("a", 1) is None
    for _ in range(10):
        a.append(batch(), now=T0)
    a.set_high_watermark(15)
    a.delete_records(3)
    mgr.close()
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    assert read_offsets(tmp_path / RECOVERY_POINT_FILE) == {("a", 0): 20}
    assert read_offsets(tmp_path / LOG_START_FILE) == {("a", 0): 3}
    assert read_offsets(tmp_path / HIGH_WATERMARK_FILE) == {("a", 0): 15}

    again = LogManager([tmp_path], small)
    # The marker goes as soon as the logs are open: a crash from here on is unclean.
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    assert again.unclean_dirs == []
    log = again.get("a", 0)
    assert (log.log_start_offset, log.high_watermark, log.log_end_offset, log.recovery_point) == (3, 15, 20, 20)
    assert log.append(batch(), now=T0).base_offset == 20
    again.close()


def test_a_missing_marker_means_unclean(tmp_path):
    mgr = LogManager([tmp_path], small)
    mgr.create("a", 0).append(batch())
    mgr.checkpoint()
    # Crash: nothing more is written.
    again = LogManager([tmp_path], small)
    assert again.unclean_dirs == [tmp_path]
    log = again.get("a", 0)
    assert log.log_end_offset == 2 and log.recovery_point == 0
    # A fresh, empty directory is not an unclean one.
    assert LogManager([tmp_path / "fresh"], small).unclean_dirs == []


def test_partitions_spread_over_log_dirs(tmp_path):
    dirs = [tmp_path / "d1", tmp_path / "d2", tmp_path / "d3"]
    mgr = LogManager(dirs, small)
    for p in range(6):
        mgr.create("t", p).append(batch())
    placed = sorted(len([x for x in d.iterdir() if x.is_dir()]) for d in dirs)
    assert placed == [2, 2, 2]
    mgr.close()
    for d in dirs:
        assert len(read_offsets(d / RECOVERY_POINT_FILE)) == 2
    again = LogManager(dirs, small)
    assert sorted(again.logs) == [("t", p) for p in range(6)]


def test_the_same_partition_in_two_dirs_is_refused(tmp_path):
    LogManager([tmp_path / "d1"], small).create("t", 0)
    LogManager([tmp_path / "d2"], small).create("t", 0)
    with pytest.raises(LogDirError, match="Duplicate log directories for t-0"):
        LogManager([tmp_path / "d1", tmp_path / "d2"], small)


def test_foreign_directories_are_left_alone(tmp_path):
    (tmp_path / "t-0.3f2a-delete").mkdir()
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "meta.properties").write_text("node.id=1\n")
    mgr = LogManager([tmp_path], small)
    assert mgr.logs == {}
    assert (tmp_path / "t-0.3f2a-delete").exists() and (tmp_path / "meta.properties").exists()


def test_delete_partition(tmp_path):
    mgr = LogManager([tmp_path], small)
    mgr.create("t", 0).append(batch())
    mgr.create("t", 1)
    mgr.delete("t", 0)
    mgr.delete("t", 7)
    assert mgr.get("t", 0) is None and not (tmp_path / "t-0").exists()
    mgr.close()
    assert read_offsets(tmp_path / RECOVERY_POINT_FILE) == {("t", 1): 0}


def test_flush_dirty_and_retention(tmp_path):
    mgr = LogManager([tmp_path], lambda t: LogConfig(segment_bytes=300, retention_ms=1000, flush_messages=10**9))
    a, b = mgr.create("a", 0), mgr.create("b", 0)
    for i in range(8):
        a.append(batch(ts=T0 + i), now=T0)
    b.append(batch(ts=T0), now=T0)
    assert mgr.flush_dirty() == 0  # nothing due under the policy
    assert mgr.flush_dirty(force=True) == 2
    assert (a.recovery_point, b.recovery_point) == (16, 2)
    assert mgr.flush_dirty(force=True) == 0
    a.set_high_watermark(16)
    b.set_high_watermark(2)
    segments = len(a.segments)
    assert segments > 2
    assert mgr.delete_expired(now=T0 + 10**6) == segments - 1
    assert len(a.segments) == 1 and a.log_start_offset == a.active.base_offset
    assert b.log_end_offset == 2 and len(b.segments) == 1


def test_update_config(tmp_path):
    mgr = LogManager([tmp_path], small)
    mgr.create("a", 0)
    mgr.create("a", 1)
    mgr.create("b", 0)
    cfg = LogConfig(segment_bytes=1000)
    mgr.update_config("a", cfg)
    assert mgr.get("a", 0).config is cfg and mgr.get("a", 1).config is cfg
    assert mgr.get("b", 0).config.segment_bytes == 300


def test_a_checkpoint_left_half_written_is_ignored(tmp_path):
    mgr = LogManager([tmp_path], small)
    log = mgr.create("a", 0)
    for _ in range(5):
        log.append(batch())
    log.set_high_watermark(6)
    mgr.checkpoint()
    # A crash during the next write leaves the temporary file behind.
    (tmp_path / (HIGH_WATERMARK_FILE + ".tmp")).write_bytes(b"0\n1\na 0 1")
    again = LogManager([tmp_path], small)
    assert again.get("a", 0).high_watermark == 6


def test_checkpoints_beyond_the_log_are_clamped(tmp_path):
    mgr = LogManager([tmp_path], small)
    log = mgr.create("a", 0)
    for _ in range(3):
        log.append(batch())
    mgr.close()
    for name in (RECOVERY_POINT_FILE, LOG_START_FILE, HIGH_WATERMARK_FILE):
        write_offsets(tmp_path / name, {("a", 0): 1000})
    again = LogManager([tmp_path], small).get("a", 0)
    assert (again.log_start_offset, again.high_watermark, again.log_end_offset, again.recovery_point) == (6, 6, 6, 6)
