"""PartitionLog: offsets, reads, rolls, the two ends of the log, retention,
flushing, and what a bad batch may not do."""

from __future__ import annotations

import os
import struct

import pytest

from pybroker.protocol.errors import CorruptRecordError
from pybroker.protocol.record_batch import split_batches
from pybroker.protocol.records import LOG_APPEND_TIME, Compression, NewRecord, build_batch
from pybroker.storage.config import LogConfig
from pybroker.storage.log import OffsetOutOfRangeError, PartitionLog
from pybroker.storage.segment import BatchInfo

from .test_layout import log_batches, parse_log, parse_offset_index, segment_bases

T0 = 1_700_000_000_000


def batch(
    n: int = 1,
    *,
    ts: int = T0,
    size: int = 20,
    step: int = 1,
    codec=Compression.NONE,
    epoch: int = -1,
    base_offset: int = 0,
) -> bytes:
    """n records with timestamps ts, ts + step, ..."""
    records = [NewRecord(b"k%d" % i, bytes([65 + i % 26]) * size, (), ts + i * step) for i in range(n)]
    return build_batch(records, compression=codec, partition_leader_epoch=epoch, base_offset=base_offset)


def open_log(tmp_path, name="t-0", **config) -> PartitionLog:
    return PartitionLog(tmp_path / name, LogConfig(**config))


def read_all(log: PartitionLog, start: int | None = None) -> list:
    """Every batch from ``start`` (default the log start) to the log end."""
    offset = log.log_start_offset if start is None else start
    out = []
    while offset < log.log_end_offset:
        got = log.read(offset, 1 << 20, max_offset=log.log_end_offset)
        if not got.data:
            break
        batches, rest = split_batches(bytes(got.data))
        assert rest == 0
        out += batches
        offset = batches[-1].next_offset
    return out


def patched(raw: bytes, base_offset: int, epoch: int | None = None) -> bytes:
    out = bytearray(raw)
    struct.pack_into(">q", out, 0, base_offset)
    if epoch is not None:
        struct.pack_into(">i", out, 12, epoch)
    return bytes(out)


def dir_sizes(log: PartitionLog) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in log.directory.iterdir()}


# -- appending -------------------------------------------------------------------


def test_append_assigns_offsets_and_stamps_the_epoch(tmp_path):
    log = open_log(tmp_path)
    raws = [batch(3), batch(1), batch(5, codec=Compression.ZSTD)]
    results = [log.append(raw, leader_epoch=7, now=T0) for raw in raws]
    assert [(r.base_offset, r.last_offset, r.record_count) for r in results] == [(0, 2, 3), (3, 3, 1), (4, 8, 5)]
    assert results[0].max_timestamp == T0 + 2 and results[0].offset_of_max_timestamp == 2
    assert results[0].log_append_time == -1
    assert log.log_end_offset == 9
    on_disk = log_batches(log.directory)
    assert [b.data for b in on_disk] == [patched(raw, r.base_offset, 7) for raw, r in zip(raws, results)]
    assert log.epochs.entries == [(7, 0)]


def test_append_leaves_read_only_input_alone_and_patches_a_bytearray_in_place(tmp_path):
    log = open_log(tmp_path)
    log.append(batch())
    raw = batch(2)
    log.append(raw)
    assert raw == batch(2)
    buf = bytearray(batch(2))
    log.append(buf, leader_epoch=4)
    assert struct.unpack_from(">q", buf, 0)[0] == 3
    assert struct.unpack_from(">i", buf, 12)[0] == 4


def test_append_several_batches_at_once(tmp_path):
    log = open_log(tmp_path)
    raws = [batch(2), batch(1, codec=Compression.GZIP), batch(4, codec=Compression.LZ4)]
    result = log.append(b"".join(raws), leader_epoch=1)
    assert (result.base_offset, result.last_offset, result.record_count) == (0, 6, 7)
    assert [b.base_offset for b in log_batches(log.directory)] == [0, 2, 3]


def test_log_append_time_sets_max_timestamp_and_keeps_the_crc_valid(tmp_path):
    log = open_log(tmp_path, message_timestamp_type="LogAppendTime")
    result = log.append(batch(3, ts=5), now=T0 + 99)
    assert result.log_append_time == T0 + 99
    assert result.max_timestamp == T0 + 99
    (stored,) = read_all(log)
    stored.validate()
    assert stored.timestamp_type == LOG_APPEND_TIME
    assert [r.timestamp for r in stored.records()] == [T0 + 99] * 3


def corrupt_crc(raw: bytes) -> bytes:
    out = bytearray(raw)
    out[-1] ^= 0x01
    return bytes(out)


def with_length(raw: bytes, length: int) -> bytes:
    out = bytearray(raw)
    struct.pack_into(">i", out, 8, length)
    return bytes(out)


def with_last_offset_delta(raw: bytes, delta: int) -> bytes:
    """A batch whose header claims another offset range, CRC made valid again."""
    import crc32c

    out = bytearray(raw)
    struct.pack_into(">i", out, 23, delta)
    struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[21:])))
    return bytes(out)


BAD_INPUTS = {
    "bad crc": lambda: corrupt_crc(batch(2)),
    "bad crc in the second batch": lambda: batch(1) + corrupt_crc(batch(2)),
    "length past the end": lambda: with_length(batch(2), 10_000),
    "length below the header": lambda: with_length(batch(2), 20),
    "length shorter than the batch": lambda: with_length(batch(2), len(batch(2)) - 20),
    "truncated batch": lambda: batch(3)[:-5],
    "trailing bytes": lambda: batch(1) + b"\0\0\0",
    "negative last offset delta": lambda: with_last_offset_delta(batch(3), -3),
    "magic 1": lambda: batch(1)[:16] + b"\x01" + batch(1)[17:],
    "nothing": lambda: b"",
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_is_rejected_before_any_byte_is_written(tmp_path, name):
    log = open_log(tmp_path, segment_bytes=300)
    for _ in range(4):
        log.append(batch(2, size=40))
    before = dir_sizes(log)
    contents = {p.name: p.read_bytes() for p in log.directory.iterdir()}
    end, segments = log.log_end_offset, len(log.segments)
    with pytest.raises(CorruptRecordError):
        log.append(BAD_INPUTS[name](), leader_epoch=3)
    assert dir_sizes(log) == before
    assert {p.name: p.read_bytes() for p in log.directory.iterdir()} == contents
    assert (log.log_end_offset, len(log.segments)) == (end, segments)
    assert log.epochs.entries == []
    # And the log goes on as if nothing had happened.
    assert log.append(batch()).base_offset == end


def test_append_with_given_offsets(tmp_path):
    log = open_log(tmp_path, segment_bytes=10_000)
    log.append(batch(2, epoch=1, base_offset=0), assign_offsets=False)
    with pytest.raises(CorruptRecordError):
        log.append(batch(2, epoch=1, base_offset=1), assign_offsets=False)
    # A gap (offsets compacted away on the leader) is kept as it is.
    log.append(batch(1, epoch=2, base_offset=10) + batch(1, epoch=3, base_offset=12), assign_offsets=False)
    assert log.log_end_offset == 13
    assert [b.base_offset for b in read_all(log)] == [0, 10, 12]
    assert log.epochs.entries == [(1, 0), (2, 10), (3, 12)]
    with pytest.raises(CorruptRecordError):
        log.append(batch(1, base_offset=20) + batch(1, base_offset=20), assign_offsets=False)
    assert log.log_end_offset == 13


# -- rolling ---------------------------------------------------------------------


def test_roll_on_segment_bytes(tmp_path):
    log = open_log(tmp_path, segment_bytes=500)
    size = len(batch(size=100))
    for _ in range(10):
        log.append(batch(size=100))
    per_segment = 500 // size
    assert segment_bases(log.directory) == list(range(0, 10, per_segment))
    assert all(seg.size <= 500 for seg in log.segments)
    # A batch larger than a whole segment still goes in, alone.
    log.append(batch(size=2000))
    assert log.active.base_offset == 10 and log.active.size > 500


def test_roll_on_segment_ms_compares_record_timestamps(tmp_path):
    log = open_log(tmp_path, segment_ms=1000)
    log.append(batch(ts=T0), now=T0)
    log.append(batch(ts=T0 + 1000), now=T0 + 5000)  # not more than segment.ms after the first
    assert len(log.segments) == 1
    log.append(batch(ts=T0 + 1001), now=T0 + 1001)
    assert [s.base_offset for s in log.segments] == [0, 2]


def test_old_timestamps_do_not_roll_every_append(tmp_path):
    # Data replayed or mirrored with timestamps far in the past.
    log = open_log(tmp_path)
    for i in range(5):
        log.append(batch(ts=1000 + i), now=T0)
    assert len(log.segments) == 1


def test_segment_ms_without_timestamps_uses_the_segment_age(tmp_path):
    log = open_log(tmp_path, segment_ms=1)
    log.append(batch(ts=-1))
    log.active.created_ms -= 10
    log.append(batch(ts=-1))
    assert len(log.segments) == 2


def test_roll_when_the_index_is_full(tmp_path):
    # 24 bytes: three offset entries, two time entries, one kept for the roll.
    log = open_log(tmp_path, segment_index_bytes=24, index_interval_bytes=0)
    for i in range(12):
        log.append(batch(ts=T0 + i), now=T0)
    assert len(log.segments) > 3
    assert [b.base_offset for b in read_all(log)] == list(range(12))


def test_one_append_with_more_batches_than_index_room(tmp_path):
    log = open_log(tmp_path, segment_index_bytes=36, index_interval_bytes=10)
    for i in range(4):
        log.append(b"".join(batch(ts=T0 + 10 * i + j) for j in range(6)), now=T0)
    assert log.log_end_offset == 24
    assert log.size_in_bytes == sum(p.stat().st_size for p in log.directory.glob("*.log"))
    assert [b.base_offset for b in read_all(log)] == list(range(24))
    log.close()
    log = open_log(tmp_path, segment_index_bytes=36, index_interval_bytes=10)
    assert [b.base_offset for b in read_all(log)] == list(range(24))


def test_explicit_roll(tmp_path):
    log = open_log(tmp_path)
    assert log.roll() is log.active  # nothing to roll
    log.append(batch(3))
    new = log.roll()
    assert new.base_offset == 3 and log.roll() is new
    assert segment_bases(log.directory) == [0, 3]


# -- reading ---------------------------------------------------------------------


def test_read_returns_whole_batches_within_max_bytes(tmp_path):
    log = open_log(tmp_path)
    raws = [batch(2, size=100 + 10 * i) for i in range(6)]
    for raw in raws:
        log.append(raw)
    log.set_high_watermark(log.log_end_offset)
    sizes = [len(r) for r in raws]
    got = log.read(0, sizes[0] + sizes[1] + 5)
    assert bytes(got.data) == patched(raws[0], 0) + patched(raws[1], 2)
    assert got.first_offset == 0
    # From the middle of a batch: that batch, whole.
    got = log.read(5, 1)
    assert bytes(got.data) == patched(raws[2], 4)
    assert got.first_offset == 4
    # max_bytes below the first batch still returns it whole.
    assert bytes(log.read(0, 0).data) == patched(raws[0], 0)


def test_read_stops_at_the_high_watermark(tmp_path):
    log = open_log(tmp_path)
    for _ in range(5):
        log.append(batch(2))
    log.set_high_watermark(4)
    got = log.read(0, 1 << 20)
    assert [b.base_offset for b in split_batches(bytes(got.data))[0]] == [0, 2]
    assert log.read(4, 1 << 20).data == b""
    assert len(split_batches(bytes(log.read(4, 1 << 20, max_offset=10).data))[0]) == 3
    assert log.read(10, 100).data == b""


def test_read_out_of_range(tmp_path):
    log = open_log(tmp_path)
    for _ in range(5):
        log.append(batch(2))
    log.set_high_watermark(10)
    log.delete_records(3)
    for offset in (-1, 0, 2, 11):
        with pytest.raises(OffsetOutOfRangeError) as err:
            log.read(offset, 100)
        assert (err.value.start, err.value.end) == (3, 10)
    # Offset 3 is inside the batch 2-3, which comes back whole.
    assert log.read(3, 100).first_offset == 2


def test_read_moves_to_the_next_segment_across_a_gap(tmp_path):
    log = open_log(tmp_path, segment_bytes=350)
    log.append(batch(1, base_offset=0), assign_offsets=False)
    log.append(batch(1, base_offset=1, size=150), assign_offsets=False)
    log.append(batch(1, base_offset=50), assign_offsets=False)
    log.set_high_watermark(51)
    assert [s.base_offset for s in log.segments] == [0, 50]
    got = log.read(2, 1000)
    assert got.first_offset == 50 and got.segment_base == 50


def test_offset_for_timestamp(tmp_path):
    log = open_log(tmp_path, segment_bytes=400, index_interval_bytes=50)
    for i in range(20):
        log.append(batch(3, ts=T0 + 100 * i, step=10), now=T0)
    log.set_high_watermark(log.log_end_offset)
    assert len(log.segments) > 3
    assert log.offset_for_timestamp(0) == (T0, 0)
    assert log.offset_for_timestamp(T0 + 15) == (T0 + 20, 2)
    assert log.offset_for_timestamp(T0 + 1000) == (T0 + 1000, 30)
    assert log.offset_for_timestamp(T0 + 1905) == (T0 + 1910, 58)
    assert log.offset_for_timestamp(T0 + 1921) is None
    assert log.max_timestamp() == (T0 + 1920, 59)


def test_offset_for_timestamp_skips_records_below_the_log_start(tmp_path):
    log = open_log(tmp_path)
    log.append(batch(5, ts=1000, step=0), now=T0)
    log.append(batch(5, ts=1000, step=0), now=T0)
    log.set_high_watermark(10)
    log.delete_records(7)
    assert len(log.segments) == 1
    assert log.offset_for_timestamp(500) == (1000, 7)


def test_max_timestamp_finds_the_first_record_holding_it(tmp_path):
    log = open_log(tmp_path, segment_bytes=300)
    assert log.max_timestamp() == (-1, -1)
    for ts in (T0, T0 + 50, T0 + 10, T0 + 50, T0 + 20):
        log.append(batch(2, ts=ts, step=0), now=T0)
    assert log.max_timestamp() == (T0 + 50, 2)
    log.close()
    assert open_log(tmp_path, segment_bytes=300).max_timestamp() == (T0 + 50, 2)


# -- moving the ends -------------------------------------------------------------


def test_high_watermark_is_clamped_to_the_log(tmp_path):
    log = open_log(tmp_path)
    log.append(batch(4))
    log.set_high_watermark(100)
    assert log.high_watermark == 4
    log.set_high_watermark(-5)
    assert log.high_watermark == 0


def filled(tmp_path, batches=12, per=3, **config):
    config.setdefault("segment_bytes", 400)
    log = open_log(tmp_path, **config)
    for i in range(batches):
        log.append(batch(per, ts=T0 + i), leader_epoch=i // 4, now=T0)
    log.set_high_watermark(log.log_end_offset)
    return log


def test_truncate_to_inside_the_active_segment(tmp_path):
    log = filled(tmp_path)
    segments = len(log.segments)
    log.truncate_to(log.log_end_offset - 2)  # inside the last batch: it goes whole
    assert log.log_end_offset == 33
    assert len(log.segments) == segments
    assert [b.base_offset for b in read_all(log)] == list(range(0, 33, 3))
    assert log.append(batch()).base_offset == 33


def test_truncate_to_across_segments(tmp_path):
    log = filled(tmp_path)
    log.recovery_point = log.log_end_offset
    log.cleaner_offset = 30
    log.truncate_to(10)  # inside batch 9-11
    assert log.log_end_offset == 9
    assert log.high_watermark == 9 and log.recovery_point == 9 and log.cleaner_offset == 9
    assert all(s.base_offset < 9 for s in log.segments)
    assert segment_bases(log.directory) == [s.base_offset for s in log.segments]
    assert log.epochs.entries == [(0, 0)]
    batches, rest = parse_log(log.active.path)
    assert rest == 0 and batches[-1].last_offset == 8
    log.append(batch(), leader_epoch=5)
    assert [b.base_offset for b in read_all(log)] == [0, 3, 6, 9]
    assert log.epochs.entries == [(0, 0), (5, 9)]


def test_truncating_at_a_segment_end_makes_it_active_again(tmp_path):
    log = open_log(tmp_path)
    log.append(batch(3))
    log.roll()  # trims segment 0's indexes: they are full now
    log.append(batch(2))
    log.truncate_to(3)
    assert [s.base_offset for s in log.segments] == [0]
    log.append(batch(2))
    assert [s.base_offset for s in log.segments] == [0]
    assert [b.base_offset for b in read_all(log)] == [0, 3]


def test_truncate_to_the_log_start(tmp_path):
    log = filled(tmp_path)
    log.delete_records(13)
    log.truncate_to(0)
    # Never below the log start; the batch straddling it goes, and the start with it.
    assert log.log_end_offset == 12 and log.log_start_offset == 12
    assert read_all(log) == []


def test_truncate_to_past_the_end_does_nothing(tmp_path):
    log = filled(tmp_path)
    before = dir_sizes(log)
    log.truncate_to(log.log_end_offset)
    log.truncate_to(log.log_end_offset + 5)
    assert dir_sizes(log) == before


def test_truncate_fully(tmp_path):
    log = filled(tmp_path)
    log.truncate_fully(500)
    assert (log.log_start_offset, log.high_watermark, log.log_end_offset, log.cleaner_offset) == (500, 500, 500, 500)
    assert segment_bases(log.directory) == [500]
    assert log.epochs.entries == []
    assert log.append(batch(), leader_epoch=9).base_offset == 500
    assert log.epochs.entries == [(9, 500)]


def test_delete_records(tmp_path):
    log = filled(tmp_path)
    log.set_high_watermark(20)
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records(21)
    bases = segment_bases(log.directory)
    assert log.delete_records(16) == 16
    assert log.delete_records(10) == 16  # never backwards
    kept = [b for b in bases if b <= 16]
    assert segment_bases(log.directory) == [kept[-1]] + [b for b in bases if b > 16]
    assert log.epochs.entries == [(1, 16), (2, 24)]
    assert log.read(16, 10).first_offset == 15


def test_retention_by_time(tmp_path):
    log = filled(tmp_path, retention_ms=1000)
    bases = segment_bases(log.directory)
    # Segment i holds timestamps T0 + i..., the active one is never deleted.
    assert log.delete_expired_segments(now=T0 + 1000) == []
    gone = log.delete_expired_segments(now=T0 + 1000 + 6)
    assert gone and all(log.segments[0].base_offset > g for g in gone)
    assert log.log_start_offset == log.segments[0].base_offset
    assert log.delete_expired_segments(now=T0 + 10**9) == bases[len(gone) : -1]
    assert len(log.segments) == 1 and log.log_start_offset == bases[-1]
    assert log.epochs.entries[0][1] == log.log_start_offset


def test_retention_by_size(tmp_path):
    log = filled(tmp_path, retention_bytes=1000)
    before = log.size_in_bytes
    gone = log.delete_expired_segments(now=T0)
    assert before > 1000 and gone
    # Oldest first, as long as what remains is still at least retention.bytes.
    assert log.size_in_bytes >= 1000
    assert log.size_in_bytes - log.segments[0].size < 1000


def test_retention_keeps_what_is_not_yet_committed(tmp_path):
    log = filled(tmp_path, retention_ms=0)
    bases = segment_bases(log.directory)
    log.set_high_watermark(bases[1] - 1)
    assert log.delete_expired_segments(now=T0 + 10**9) == []
    # A segment goes once all of it is below the high watermark.
    log.set_high_watermark(bases[3] + 1)
    assert log.delete_expired_segments(now=T0 + 10**9) == bases[:3]
    assert log.log_start_offset == bases[3]


def test_retention_only_with_the_delete_policy(tmp_path):
    log = filled(tmp_path, retention_ms=0, cleanup_policy=frozenset({"compact"}))
    assert log.delete_expired_segments(now=T0 + 10**9) == []


# -- durability --------------------------------------------------------------------


def test_flush_moves_the_recovery_point(tmp_path):
    log = open_log(tmp_path, segment_bytes=300, flush_ms=1000)
    for _ in range(6):
        log.append(batch(2, size=50))
    assert log.recovery_point == 0 and log.needs_flush(now=log.last_flush_ms + 10**12)
    assert log.flush()
    assert log.recovery_point == 12
    assert not log.needs_flush(now=log.last_flush_ms + 10**12)
    assert not log.flush()


def test_flush_messages_policy(tmp_path):
    log = open_log(tmp_path, flush_messages=5)
    log.append(batch(3))
    assert log.recovery_point == 0
    log.append(batch(3))
    assert log.recovery_point == 6 and log.unflushed_messages == 0


def test_flush_ms_policy(tmp_path):
    log = open_log(tmp_path, flush_ms=1000)
    log.append(batch())
    assert not log.needs_flush(now=log.last_flush_ms + 999)
    assert log.needs_flush(now=log.last_flush_ms + 1000)


def test_clean_reopen_keeps_everything(tmp_path):
    log = filled(tmp_path, index_interval_bytes=50)
    log.flush()
    log.close()
    again = PartitionLog(
        tmp_path / "t-0", LogConfig(segment_bytes=400), recovery_point=36, log_start_offset=4, high_watermark=30
    )
    assert (again.log_start_offset, again.high_watermark, again.log_end_offset, again.recovery_point) == (4, 30, 36, 36)
    assert [b.base_offset for b in read_all(again)] == list(range(3, 36, 3))
    assert again.read(4, 10).first_offset == 3
    assert again.append(batch()).base_offset == 36


def test_unclean_reopen_keeps_the_checkpointed_recovery_point(tmp_path):
    log = filled(tmp_path)
    log.close()
    again = PartitionLog(tmp_path / "t-0", LogConfig(segment_bytes=400), recovery_point=9, clean=False)
    assert again.log_end_offset == 36
    # The recovered tail is not known to be on disk until the next flush.
    assert again.recovery_point == 9
    again.flush()
    assert again.recovery_point == 36


def test_replace_segments_swaps_a_cleaned_segment_in(tmp_path):
    log = filled(tmp_path, segment_bytes=300)
    old = log.segments[:2]
    new = log.new_cleaned_segment(old[0].base_offset)
    kept = []
    for seg in old:
        infos = list(seg.scan_headers())
        info = infos[-1]  # keep the last batch of each
        new.append(
            seg.read_at(info.position, info.size),
            [BatchInfo(0, info.base_offset, info.last_offset, info.size, info.max_timestamp)],
        )
        kept.append(info.base_offset)
    log.replace_segments(old, new)
    assert not list(log.directory.glob("*.cleaned")) and not list(log.directory.glob("*.swap"))
    assert [s.base_offset for s in log.segments][0] == old[0].base_offset
    bases = [b.base_offset for b in read_all(log)]
    assert bases[: len(kept)] == kept
    log.close()
    again = open_log(tmp_path, segment_bytes=300)
    assert [b.base_offset for b in read_all(again)] == bases


def test_delete_removes_the_directory(tmp_path):
    log = filled(tmp_path)
    log.delete()
    assert not (tmp_path / "t-0").exists()


def test_partition_directory_name(tmp_path):
    log = PartitionLog(tmp_path / "my-topic-name-12", LogConfig())
    assert (log.topic, log.partition) == ("my-topic-name", 12)
    with pytest.raises(ValueError):
        PartitionLog(tmp_path / "nopartition", LogConfig())


def test_an_empty_log_reads_nothing(tmp_path):
    log = open_log(tmp_path)
    assert (log.log_start_offset, log.high_watermark, log.log_end_offset) == (0, 0, 0)
    assert log.read(0, 100).data == b""
    assert log.offset_for_timestamp(0) is None
    assert os.path.exists(tmp_path / "t-0" / "00000000000000000000.log")


def test_reopening_rebuilds_index_files_that_went_missing(tmp_path):
    # The log lists its directory once on open and tells each segment which
    # index files are there: a missing one must still be rebuilt.
    log = open_log(tmp_path, segment_bytes=400, index_interval_bytes=60)
    for _ in range(12):
        log.append(batch(2))
    bases = segment_bases(log.directory)
    assert len(bases) >= 3
    first = log.directory / f"{bases[0]:020d}.index"
    expected = parse_offset_index(first)
    assert expected
    before = [b.base_offset for b in read_all(log)]
    log.close()
    first.unlink()
    (log.directory / f"{bases[0]:020d}.timeindex").unlink()
    again = open_log(tmp_path, segment_bytes=400, index_interval_bytes=60)
    assert [b.base_offset for b in read_all(again)] == before
    again.close()
    assert parse_offset_index(first) == expected
    assert (log.directory / f"{bases[0]:020d}.timeindex").stat().st_size > 0
