"""The log cleaner: against an in-memory model of compaction, on Kafka's
batch-level rules (byte-for-byte copies, rebuilt batches, empty headers,
delete horizons), on when a pass may run and how far, and across crashes at
every step of the segment swap."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import pytest

import pybroker.storage.log as log_module
from pybroker.protocol.compression import Compression
from pybroker.protocol.record_batch import RecordBatch, split_batches
from pybroker.protocol.records import NewRecord, build_batch, build_control_batch
from pybroker.storage.cleaner import CleanPlan, cleanable_range, clean, commit, discard, prepare
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog
from pybroker.storage.segment import LogSegment

T0 = 1_700_000_000_000
RETENTION = 10_000
CODECS = list(Compression)


def config(**kw) -> LogConfig:
    kw.setdefault("cleanup_policy", frozenset({"compact"}))
    kw.setdefault("segment_bytes", 1024)
    kw.setdefault("delete_retention_ms", RETENTION)
    kw.setdefault("index_interval_bytes", 128)
    return LogConfig(**kw)


def open_log(tmp_path, cfg: LogConfig, **kw) -> PartitionLog:
    return PartitionLog(tmp_path / "topic-0", cfg, **kw)


@dataclass(frozen=True)
class Rec:
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple = ()


def append(log, records, *, codec=Compression.NONE, producer=(-1, -1, -1), leader_epoch=-1) -> list[Rec]:
    """Append one batch of (key, value, timestamp[, headers]) and return the
    records as stored."""
    pid, epoch, seq = producer
    new = [NewRecord(r[0], r[1], r[3] if len(r) > 3 else (), r[2]) for r in records]
    data = bytearray(build_batch(new, compression=codec, producer_id=pid, producer_epoch=epoch, base_sequence=seq))
    res = log.append(data, leader_epoch=leader_epoch, now=T0)
    log.set_high_watermark(log.log_end_offset)
    return [
        Rec(res.base_offset + i, r.key, r.value, r.timestamp, tuple(r.headers)) for i, r in enumerate(new)
    ]


def read_batches(log, start=None, end=None) -> list[RecordBatch]:
    """Every batch from ``start`` (default: the log start) up to ``end``
    (default: the log end), through PartitionLog.read, in small reads."""
    offset = log.log_start_offset if start is None else start
    end = log.log_end_offset if end is None else end
    out = []
    while offset < end:
        res = log.read(offset, 300, max_offset=end)
        batches, _ = split_batches(bytes(res.data))
        if not batches:
            break
        for b in batches:
            b.validate()
            assert not out or b.base_offset > out[-1].last_offset
            out.append(b)
        offset = batches[-1].next_offset
    return out


def records_of(batches) -> list[Rec]:
    out = []
    for b in batches:
        for r in b.records():
            assert b.base_offset <= r.offset <= b.last_offset
            out.append(Rec(r.offset, r.key, r.value, r.timestamp, tuple(r.headers)))
    offsets = [r.offset for r in out]
    assert offsets == sorted(set(offsets))
    return out


def read_all(log) -> list[Rec]:
    return records_of(read_batches(log))


def latest_by_key(history) -> dict:
    latest = {}
    for r in history:
        latest[r.key] = r
    return latest


def check_segments(log):
    for prev, seg in zip(log.segments, log.segments[1:]):
        assert prev.base_offset < seg.base_offset
        assert prev.next_offset <= seg.base_offset


def crash(log, plan: CleanPlan | None = None):
    """Stop using the files the way a killed process would."""
    for seg in log.segments:
        seg.offset_index.close(trim=False)
        seg.time_index.close(trim=False)
        seg.close()
    if plan is not None:
        for g in plan.groups:
            g.new.close()


def random_batch(rng, keys, tombstone_rate=0.15):
    n = rng.randint(1, 6)
    recs = []
    for _ in range(n):
        key = rng.choice(keys)
        value = None if rng.random() < tombstone_rate else rng.randbytes(rng.randint(0, 40))
        headers = [("h", rng.randbytes(3))] if rng.random() < 0.2 else []
        recs.append((key, value, T0 + rng.randint(-5000, 5000), headers))
    return recs


def fill(log, rng, batches, keys, history, producers=None):
    """Append random batches; ``producers`` (pid -> (next sequence, last
    batch's (base offset, last offset, base sequence))) makes some idempotent."""
    for _ in range(batches):
        producer = (-1, -1, -1)
        if producers is not None and rng.random() < 0.3:
            pid = rng.choice(sorted(producers))
            producer = (pid, 0, producers[pid][0])
        recs = random_batch(rng, keys)
        stored = append(log, recs, codec=rng.choice(CODECS), producer=producer)
        history += stored
        if producer[0] >= 0:
            producers[producer[0]] = (producer[2] + len(recs), (stored[0].offset, stored[-1].offset, producer[2]))


# -- against the model ----------------------------------------------------------


def test_first_clean_keeps_exactly_the_latest_record_of_each_key(tmp_path):
    rng = random.Random(1)
    log = open_log(tmp_path, config(segment_bytes=700))
    keys = [b"k%02d" % i for i in range(25)]
    history: list[Rec] = []
    fill(log, rng, 150, keys, history)
    log.roll()
    assert len(log.segments) > 10
    before = read_all(log)
    assert before == history

    result = clean(log, T0)
    assert result is not None
    assert result.end_offset == log.cleaner_offset == log.log_end_offset
    assert result.records_removed == len(history) - len(latest_by_key(history))
    assert result.bytes_after < result.bytes_before
    after = read_all(log)
    # Offsets, keys, values, timestamps, headers as appended; only the latest of each key.
    assert after == sorted(latest_by_key(history).values(), key=lambda r: r.offset)
    assert any(r.value is None for r in after)  # tombstones are kept before the horizon
    check_segments(log)
    assert log.log_end_offset == history[-1].offset + 1


def test_tombstones_get_a_delete_horizon_and_go_after_it(tmp_path):
    rng = random.Random(2)
    log = open_log(tmp_path, config(segment_bytes=600))
    keys = [b"k%d" % i for i in range(12)]
    history: list[Rec] = []
    fill(log, rng, 80, keys, history)
    log.roll()
    result = clean(log, T0)
    latest = latest_by_key(history)
    tombstones = {r.offset for r in latest.values() if r.value is None}
    assert tombstones
    assert result.delete_horizon_ms == T0 + RETENTION

    for b in read_batches(log):
        has_tombstone = any(r.value is None for r in b.records())
        if has_tombstone:
            assert b.has_delete_horizon and b.base_timestamp == T0 + RETENTION
    # Just before the horizon a forced pass keeps them (it only merges the
    # small cleaned segments, dropping the empty batches that ended them).
    again = clean(log, T0 + RETENTION - 1, force=True)
    assert again.records_removed == 0 and again.bytes_after < again.bytes_before
    assert {r.offset for r in read_all(log) if r.value is None} == tombstones

    # At the horizon they go; everything else stays.
    gone = clean(log, T0 + RETENTION, force=True)
    assert gone.records_removed == len(tombstones)
    assert gone.delete_horizon_ms is None
    assert read_all(log) == sorted((r for r in latest.values() if r.value is not None), key=lambda r: r.offset)


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15, 16])
def test_random_rounds_against_model(tmp_path, seed):
    """Appends, rolls, a moving high watermark, cleans at moving times with
    and without force and with a small key budget, reopens: after every pass
    the log is what compaction of the history says."""
    rng = random.Random(seed)
    cfg = config(segment_bytes=rng.choice([500, 900, 2000]), min_cleanable_dirty_ratio=0.3)
    log = open_log(tmp_path, cfg)
    keys = [b"key-%d" % i for i in range(rng.choice([8, 30]))]
    producers = {100: (0, None), 101: (0, None)}
    history: list[Rec] = []
    stamped: dict[int, int] = {}  # tombstone offset -> delete horizon given by the cleaner
    cleaned_to = 0
    now = T0
    for _ in range(20):
        fill(log, rng, rng.randint(3, 25), keys, history, producers)
        if rng.random() < 0.4:
            log.roll()
        if rng.random() < 0.3:  # the high watermark lags the log end
            log.set_high_watermark(history[-rng.randint(1, 10)].offset + 1)
        now += rng.randint(0, RETENTION // 2)
        active = log.active
        active_bytes = active.read_at(0, active.size)
        result = clean(log, now, force=rng.random() < 0.5, max_keys=rng.choice([4, 1000]))
        assert log.active is active and active.read_at(0, active.size) == active_bytes
        if result is not None:
            assert result.end_offset <= min(log.high_watermark, active.base_offset)
            for r in history:
                if r.value is None and r.offset < result.end_offset and r.offset not in stamped:
                    stamped[r.offset] = now + RETENTION
            cleaned_to = result.end_offset
        check_model(log, history, cleaned_to, now, stamped)
        check_producer_tails(log, producers)
        if rng.random() < 0.25:
            log.close()
            hw, cleaner_offset = log.high_watermark, log.cleaner_offset
            log = open_log(tmp_path, cfg, clean=rng.random() < 0.5, high_watermark=hw, cleaner_offset=cleaner_offset)
            check_model(log, history, cleaned_to, now, stamped)
    log.close()


def check_model(log, history, cleaned_to, now, stamped):
    check_segments(log)
    present = read_all(log)
    by_offset = {r.offset: r for r in history}
    offsets = set()
    for r in present:
        assert by_offset[r.offset] == r  # as appended
        offsets.add(r.offset)
    # Past the cleaned range nothing was touched.
    assert all(r.offset in offsets for r in history if r.offset >= cleaned_to)
    # Inside it, each key has at most its last record before cleaned_to ...
    last_cleaned = latest_by_key(r for r in history if r.offset < cleaned_to)
    for r in present:
        if r.offset < cleaned_to:
            assert last_cleaned[r.key] == r
    # ... which is there unless it is a tombstone whose horizon has passed.
    for r in last_cleaned.values():
        expect = r.value is not None or now < stamped[r.offset]
        assert (r.offset in offsets) == expect, r
    # The latest value of every key is always readable.
    for r in latest_by_key(history).values():
        if r.value is not None:
            assert r.offset in offsets


def check_producer_tails(log, producers):
    """The last batch of each idempotent producer keeps its header (maybe
    emptied), so its last sequence survives."""
    by_base = {b.base_offset: b for b in read_batches(log)}
    for pid, (_, tail) in producers.items():
        if tail is None:
            continue
        base, last, seq = tail
        b = by_base[base]
        assert (b.producer_id, b.last_offset, b.base_sequence) == (pid, last, seq)


# -- batch-level rules ------------------------------------------------------------


def test_surviving_batches_are_copied_byte_for_byte(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=10_000))
    append(log, [(b"a", b"1", T0), (b"b", b"1", T0)], codec=Compression.ZSTD)
    append(log, [(b"a", b"2", T0), (b"c", b"1", T0)], codec=Compression.LZ4)
    keep = append(log, [(b"d", b"1", T0), (b"e", b"1", T0 + 5)], codec=Compression.GZIP)
    append(log, [(b"a", b"3", T0)])
    log.roll()
    raw_before = {b.base_offset: bytes(b.view) for b in read_batches(log)}
    clean(log, T0)
    after = {b.base_offset: bytes(b.view) for b in read_batches(log)}
    assert after[keep[0].offset] == raw_before[keep[0].offset]
    assert after[6] == raw_before[6]


@pytest.mark.parametrize("codec", CODECS)
def test_partially_kept_batch_is_rebuilt_with_its_header(tmp_path, codec):
    log = open_log(tmp_path, config(segment_bytes=10_000))
    recs = [(b"k%d" % i, b"v%d" % i, T0 + i, [("h", b"x")]) for i in range(6)]
    first = append(log, recs, codec=codec, producer=(42, 3, 1000), leader_epoch=7)
    append(log, [(b"k1", b"new", T0 + 100), (b"k4", b"new", T0 + 100)], producer=(42, 3, 1006), leader_epoch=7)
    log.roll()
    original = read_batches(log)[0]
    clean(log, T0)
    rebuilt = read_batches(log)[0]
    assert rebuilt.base_offset == original.base_offset
    assert rebuilt.last_offset_delta == original.last_offset_delta == 5
    assert (rebuilt.producer_id, rebuilt.producer_epoch, rebuilt.base_sequence) == (42, 3, 1000)
    assert rebuilt.partition_leader_epoch == 7
    assert rebuilt.compression == codec
    assert not rebuilt.has_delete_horizon
    assert records_of([rebuilt]) == [r for r in first if r.key not in (b"k1", b"k4")]
    assert rebuilt.max_timestamp == T0 + 5


def test_tombstone_batch_keeps_record_timestamps(tmp_path):
    log = open_log(tmp_path, config())
    recs = append(log, [(b"a", None, T0 - 50), (b"b", b"x", T0 - 20)], codec=Compression.SNAPPY)
    log.roll()
    clean(log, T0)
    [batch] = read_batches(log)
    assert batch.has_delete_horizon and batch.base_timestamp == T0 + RETENTION
    assert batch.max_timestamp == T0 - 20
    assert records_of([batch]) == recs


def test_log_append_time_batches_keep_their_time(tmp_path):
    log = open_log(tmp_path, config(message_timestamp_type="LogAppendTime"))
    append(log, [(b"a", b"1", 5), (b"b", b"1", 6)])
    append(log, [(b"a", b"2", 7)])
    log.roll()
    clean(log, T0 + 1)
    first = read_batches(log)[0]
    assert first.max_timestamp == T0 and first.timestamp_type == 1
    assert [(r.key, r.timestamp) for r in first.records()] == [(b"b", T0)]


def test_emptied_batches_keep_the_producers_last_header_only(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=10_000))
    append(log, [(b"a", b"1", T0)], producer=(7, 2, 0))  # 0: emptied, not the producer's last
    append(log, [(b"b", b"1", T0), (b"c", b"1", T0)], producer=(7, 2, 1))  # 1-2: its last, emptied
    append(log, [(b"d", b"1", T0)])  # 3: plain, emptied
    append(log, [(b"a", b"2", T0), (b"b", b"2", T0), (b"c", b"2", T0), (b"d", b"2", T0)])  # 4-7
    append(log, [(b"z", b"1", T0)])  # 8: the group's last batch
    log.roll()
    clean(log, T0)
    batches = read_batches(log)
    assert [(b.base_offset, b.last_offset, b.record_count) for b in batches] == [(1, 2, 0), (4, 7, 4), (8, 8, 1)]
    empty = batches[0]
    assert (empty.producer_id, empty.producer_epoch, empty.base_sequence, empty.last_sequence) == (7, 2, 1, 2)
    assert empty.compression == Compression.NONE


def test_producer_state_decides_which_emptied_batch_stays(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=10_000))
    append(log, [(b"a", b"1", T0)], producer=(7, 0, 0))
    append(log, [(b"b", b"1", T0)], producer=(7, 0, 1))
    append(log, [(b"a", b"2", T0), (b"b", b"2", T0)])
    log.roll()
    # The producer state says producer 7 expired: nothing of it is kept.
    clean(log, T0, producer_last_offsets={})
    assert [(b.base_offset, b.record_count) for b in read_batches(log)] == [(2, 2)]


def test_group_tail_is_kept_as_an_empty_batch(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=150))  # two of these batches a segment
    append(log, [(b"a", b"1", T0)])
    append(log, [(b"a", b"2", T0)])
    append(log, [(b"a", b"3", T0)])
    log.roll()
    assert [s.base_offset for s in log.segments] == [0, 2, 3]
    clean(log, T0, force=True)
    # Segment 0 is a group of its own: its last batch (offset 1) stays,
    # empty, so the cleaned segment still ends where the old one ended.
    assert [(b.base_offset, b.record_count) for b in read_batches(log)] == [(1, 0), (2, 1)]
    assert log.segments[0].next_offset == 2


def test_null_keys_are_dropped_and_control_batches_kept(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=10_000))
    append(log, [(None, b"keyless", T0), (b"a", b"1", T0)])
    marker = bytearray(build_control_batch(9, 0, True, 3, T0))
    log.append(marker, now=T0)
    append(log, [(b"a", b"2", T0)])
    log.roll()
    log.set_high_watermark(log.log_end_offset)
    clean(log, T0)
    batches = read_batches(log)
    assert [(b.base_offset, b.record_count, b.is_control) for b in batches] == [(2, 1, True), (3, 1, False)]
    assert bytes(batches[0].view) == bytes(marker)


# -- when and how far --------------------------------------------------------------


def test_not_compacted_topic_is_never_cleaned(tmp_path):
    log = open_log(tmp_path, config(cleanup_policy=frozenset({"delete"})))
    for i in range(10):
        append(log, [(b"a", b"%d" % i, T0)])
    log.roll()
    assert clean(log, T0, force=True) is None
    assert len(read_all(log)) == 10


def test_dirty_ratio_gates_the_pass(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=400, min_cleanable_dirty_ratio=0.5))
    for i in range(40):
        append(log, [(b"k%d" % (i % 20), b"v" * 20, T0)])
    log.roll()
    rng = cleanable_range(log, T0)
    assert (rng.first_dirty_offset, rng.clean_bytes, rng.dirty_ratio) == (0, 0, 1.0)
    assert clean(log, T0) is not None
    assert log.cleaner_offset == 40
    clean_size = log.size_in_bytes

    # A little dirt: below the ratio, nothing happens.
    for i in range(3):
        append(log, [(b"k%d" % i, b"w" * 20, T0)])
    log.roll()
    rng = cleanable_range(log, T0)
    assert rng.first_dirty_offset == 40 and rng.first_uncleanable_offset == 43
    assert rng.clean_bytes == clean_size and 0 < rng.dirty_ratio < 0.5
    assert clean(log, T0) is None
    assert len(read_all(log)) == 23
    # Force ignores the ratio.
    assert clean(log, T0, force=True).end_offset == 43
    assert len(read_all(log)) == 20

    # Enough dirt: above the ratio.
    for i in range(30):
        append(log, [(b"k%d" % (i % 20), b"x" * 20, T0)])
    log.roll()
    assert cleanable_range(log, T0).dirty_ratio > 0.5
    assert clean(log, T0).end_offset == 73
    assert len(read_all(log)) == 20


def test_min_compaction_lag_keeps_young_segments_dirty(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=10_000, min_compaction_lag_ms=1000, min_cleanable_dirty_ratio=0.0))
    for i in range(4):
        append(log, [(b"a", b"old%d" % i, T0 + i)])
        log.roll()
    for i in range(3):
        append(log, [(b"a", b"young%d" % i, T0 + 5000 + i)])
    log.roll()
    append(log, [(b"a", b"later", T0)])
    log.roll()
    now = T0 + 5000 + 500  # the young segment is 500 ms old, under the lag
    rng = cleanable_range(log, now)
    assert rng.first_uncleanable_offset == 4
    result = clean(log, now)
    assert result.end_offset == 4
    assert [r.value for r in read_all(log)] == [b"old3", b"young0", b"young1", b"young2", b"later"]
    # Once it is old enough the rest goes.
    result = clean(log, T0 + 5002 + 1000 + 1)
    assert result.end_offset == 8
    assert [r.value for r in read_all(log)] == [b"later"]


def test_max_compaction_lag_forces_a_pass_below_the_ratio(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=10_000, min_cleanable_dirty_ratio=1.0, max_compaction_lag_ms=60_000))
    append(log, [(b"a", b"1", T0)])
    append(log, [(b"a", b"2", T0)])
    log.roll()
    assert not cleanable_range(log, T0 + 60_000).needs_compaction_now
    assert clean(log, T0 + 60_000) is None  # ratio 1.0 is never exceeded
    assert cleanable_range(log, T0 + 60_001).needs_compaction_now
    assert clean(log, T0 + 60_001) is not None
    assert [r.value for r in read_all(log)] == [b"2"]


def test_high_watermark_bounds_the_pass(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=10_000))
    for i in range(3):
        append(log, [(b"a", b"%d" % i, T0)])
        log.roll()
    append(log, [(b"a", b"3", T0)])
    log.roll()
    log.set_high_watermark(4)
    log.set_high_watermark(2)  # offsets 2.. are not committed yet
    assert cleanable_range(log, T0).first_uncleanable_offset == 2
    result = clean(log, T0)
    assert result.end_offset == 2
    assert [r.value for r in records_of(read_batches(log, end=4))] == [b"1", b"2", b"3"]


def test_active_segment_is_never_touched(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=10_000))
    for i in range(5):
        append(log, [(b"a", b"%d" % i, T0)])
    log.roll()
    for i in range(5):
        append(log, [(b"a", b"active%d" % i, T0)])
    active = log.active
    raw = active.path.read_bytes()
    result = clean(log, T0, force=True)
    assert result.end_offset == 5
    assert log.active is active and active.path.read_bytes() == raw
    assert [r.value for r in read_all(log)] == [b"4"] + [b"active%d" % i for i in range(5)]
    # Only the active segment left to clean: nothing to do.
    log2 = open_log(tmp_path / "x", config())
    append(log2, [(b"a", b"1", T0)])
    append(log2, [(b"a", b"2", T0)])
    assert clean(log2, T0, force=True) is None
    assert len(read_all(log2)) == 2


def test_key_budget_cleans_a_prefix_then_the_rest(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=300))
    history = []
    for i in range(60):
        history += append(log, [(b"k%d" % (i % 12), b"v%d" % i, T0)])
    log.roll()
    first = clean(log, T0, max_keys=5)
    assert 5 <= first.end_offset < 60
    assert log.cleaner_offset == first.end_offset
    check_model(log, history, first.end_offset, T0, {})
    second = clean(log, T0, max_keys=5, force=True)
    assert second.first_dirty_offset == first.end_offset and second.end_offset > first.end_offset
    while log.cleaner_offset < 60:
        clean(log, T0, max_keys=5, force=True)
    check_model(log, history, 60, T0, {})
    assert len(read_all(log)) == 12


def test_reads_across_cleaned_segments_are_seamless(tmp_path):
    rng = random.Random(5)
    log = open_log(tmp_path, config(segment_bytes=500))
    keys = [b"k%d" % i for i in range(10)]
    history: list[Rec] = []
    fill(log, rng, 60, keys, history)
    log.roll()
    clean(log, T0)
    present = read_all(log)
    for offset in range(log.log_end_offset):
        expected = next((r for r in present if r.offset >= offset), None)
        got = None
        at = offset
        while got is None and at < log.log_end_offset:
            batches, _ = split_batches(bytes(log.read(at, 1).data))
            assert batches, at
            got = next((r for r in records_of(batches[:1]) if r.offset >= offset), None)
            at = batches[0].next_offset
        assert got == expected, offset


@pytest.mark.parametrize("clean_shutdown", [True, False])
def test_reopen_after_clean(tmp_path, clean_shutdown):
    rng = random.Random(6)
    cfg = config(segment_bytes=800)
    log = open_log(tmp_path, cfg)
    history: list[Rec] = []
    fill(log, rng, 100, [b"k%d" % i for i in range(15)], history)
    log.roll()
    fill(log, rng, 5, [b"k1"], history)
    clean(log, T0)
    records = read_all(log)
    bases = [s.base_offset for s in log.segments]
    end = log.log_end_offset
    if clean_shutdown:
        log.close()
    else:
        crash(log)
    log = open_log(tmp_path, cfg, clean=clean_shutdown)
    assert log.recovered_bytes == 0
    assert [s.base_offset for s in log.segments] == bases
    assert log.log_end_offset == end
    assert read_all(log) == records
    check_segments(log)
    assert not [p for p in os.listdir(log.directory) if p.endswith((".cleaned", ".swap"))]


# -- concurrency contract -----------------------------------------------------------


def test_owner_appends_and_rolls_between_prepare_and_commit(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=10_000))
    for i in range(10):
        append(log, [(b"a", b"%d" % i, T0)])
    log.roll()
    plan = prepare(log, T0)
    assert all(p.name.endswith(".cleaned") for g in plan.groups for p in [g.new.path])
    for i in range(3):
        append(log, [(b"a", b"late%d" % i, T0)])
    log.roll()
    append(log, [(b"b", b"1", T0)])
    result = commit(log, plan)
    assert result.end_offset == 10
    assert [r.value for r in read_all(log)] == [b"9", b"late0", b"late1", b"late2", b"1"]


def test_commit_refuses_a_plan_the_log_moved_under(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=10_000, cleanup_policy=frozenset({"compact", "delete"})))
    for i in range(4):
        append(log, [(b"a", b"%d" % i, T0)])
        log.roll()
    plan = prepare(log, T0)
    cleaned = [g.new.path for g in plan.groups]
    assert all(p.exists() for p in cleaned)
    log.delete_records(2)  # deletes segments the plan read
    assert commit(log, plan) is None
    assert not any(p.exists() for p in cleaned)
    assert [r.value for r in read_all(log)] == [b"2", b"3"]
    assert log.cleaner_offset == 0
    with pytest.raises(ValueError):
        commit(log, plan)
    # The next pass starts from the new log start.
    assert cleanable_range(log, T0).first_dirty_offset == 2
    assert clean(log, T0).end_offset == 4
    assert [r.value for r in read_all(log)] == [b"3"]


def test_discard_removes_the_cleaned_files(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=10_000))
    for i in range(4):
        append(log, [(b"a", b"%d" % i, T0)])
    log.roll()
    plan = prepare(log, T0)
    discard(plan)
    assert not [p for p in os.listdir(log.directory) if p.endswith(".cleaned")]
    assert len(read_all(log)) == 4


# -- crashes during the swap ----------------------------------------------------------


class Crash(Exception):
    pass


def build_for_crash(tmp_path, segment_bytes=100_000, rolls=4):
    rng = random.Random(8)
    cfg = config(segment_bytes=segment_bytes)
    log = open_log(tmp_path, cfg)
    history: list[Rec] = []
    for _ in range(rolls):
        fill(log, rng, 12, [b"k%d" % i for i in range(6)], history)
        log.roll()
    fill(log, rng, 3, [b"k%d" % i for i in range(6)], history)  # active segment
    return cfg, log, history


def expected_after_clean(tmp_path, segment_bytes=100_000, rolls=4):
    _, log, _ = build_for_crash(tmp_path / "reference", segment_bytes, rolls)
    clean(log, T0)
    records = read_all(log)
    log.close()
    return records


@pytest.mark.parametrize("stage", ["cleaned", "swap", "some_deleted", "all_deleted", "renamed"])
def test_crash_during_swap_gives_old_or_new_never_a_mix(tmp_path, monkeypatch, stage):
    new_records = expected_after_clean(tmp_path)
    cfg, log, history = build_for_crash(tmp_path)
    old_records = read_all(log)
    assert old_records == history and new_records != old_records
    plan = prepare(log, T0)
    assert len(plan.groups) == 1 and len(plan.groups[0].old) == 4

    if stage != "cleaned":
        fsyncs = {"n": 0}
        real_fsync_dir = log_module._fsync_dir

        def fsync_dir(d):
            real_fsync_dir(d)
            fsyncs["n"] += 1
            if stage == "swap" or (stage == "renamed" and fsyncs["n"] == 2):
                raise Crash

        deletes = {"n": 0}
        real_delete = LogSegment.delete

        def delete(seg):
            if stage in ("some_deleted", "all_deleted") and not seg.path.name.endswith(".cleaned"):
                if stage == "some_deleted" and deletes["n"] == 2:
                    raise Crash
                deletes["n"] += 1
                real_delete(seg)
                if stage == "all_deleted" and deletes["n"] == 4:
                    raise Crash
                return
            real_delete(seg)

        monkeypatch.setattr(log_module, "_fsync_dir", fsync_dir)
        monkeypatch.setattr(LogSegment, "delete", delete)
        with pytest.raises(Crash):
            commit(log, plan)
        monkeypatch.undo()
    crash(log, plan)

    log = open_log(tmp_path, cfg, clean=False)
    got = read_all(log)
    assert got == (old_records if stage == "cleaned" else new_records)
    check_segments(log)
    assert not [p for p in os.listdir(log.directory) if p.endswith((".cleaned", ".swap"))]
    # The log works on: a pass after the crash converges to the same result.
    log.set_high_watermark(log.log_end_offset)
    clean(log, T0, force=True)
    assert read_all(log) == new_records


def test_crash_in_a_later_group_keeps_each_group_old_or_new(tmp_path, monkeypatch):
    new_records = expected_after_clean(tmp_path, segment_bytes=1500, rolls=6)
    cfg, log, history = build_for_crash(tmp_path, segment_bytes=1500, rolls=6)
    old_records = read_all(log)
    plan = prepare(log, T0)
    assert len(plan.groups) >= 3
    ranges = [(g.old[0].base_offset, g.old[-1].next_offset) for g in plan.groups]
    calls = {"n": 0}
    real = log_module._fsync_dir

    def fsync_dir(d):
        real(d)
        calls["n"] += 1
        if calls["n"] == 3:  # the second group's commit point
            raise Crash

    monkeypatch.setattr(log_module, "_fsync_dir", fsync_dir)
    with pytest.raises(Crash):
        commit(log, plan)
    monkeypatch.undo()
    crash(log, plan)
    log = open_log(tmp_path, cfg, clean=False)
    got = read_all(log)

    def part(records, lo, hi):
        return [r for r in records if lo <= r.offset < hi]

    for i, (lo, hi) in enumerate(ranges):
        mine = part(got, lo, hi)
        if i < 2:
            assert mine == part(new_records, lo, hi)
        else:
            assert mine == part(old_records, lo, hi)
    tail = ranges[-1][1]
    assert part(got, tail, 1 << 62) == part(old_records, tail, 1 << 62)
    assert latest_by_key(got) == latest_by_key(history)


# -- bounds of the writer ---------------------------------------------------------------


def test_small_io_chunks_give_the_same_result(tmp_path, monkeypatch):
    import pybroker.storage.cleaner as cleaner_module

    def run(where):
        rng = random.Random(9)
        log = open_log(where, config(segment_bytes=3000))
        history: list[Rec] = []
        fill(log, rng, 80, [b"k%d" % i for i in range(20)], history)
        log.roll()
        clean(log, T0)
        out = [bytes(b.view) for b in read_batches(log)]
        log.close()
        return out

    expected = run(tmp_path / "a")
    # Reads smaller than one batch, writes of a batch or two.
    monkeypatch.setattr(cleaner_module, "_READ_CHUNK", 40)
    monkeypatch.setattr(cleaner_module, "_WRITE_CHUNK", 150)
    assert run(tmp_path / "b") == expected


def test_tiny_indexes_never_overflow(tmp_path):
    # Room for 12 offset-index and 8 time-index entries, an entry per batch:
    # merging segments adds an entry per boundary, so a group that fits by
    # Kafka's rule can still need more entries than one index holds.
    cfg = config(segment_bytes=1 << 20, segment_index_bytes=96, index_interval_bytes=1)
    log = open_log(tmp_path, cfg)
    history: list[Rec] = []
    for i in range(120):
        history += append(log, [(b"k%d" % (i % 100), b"v%d" % i, T0 + i)])
        if i % 3 == 2:
            log.roll()  # small segments with small indexes: groups of four
    result = clean(log, T0)
    assert result.segments_rewritten > len(log.segments)
    expected = sorted(latest_by_key(history).values(), key=lambda r: r.offset)
    assert read_all(log) == expected
    batches = {seg.base_offset: sum(1 for _ in seg.scan_headers()) for seg in log.segments}
    assert any(seg.offset_index.entries < batches[seg.base_offset] - 1 for seg in log.segments)  # sparser
    for seg in log.segments:
        assert seg.offset_index.entries <= 12 and seg.time_index.entries <= 8
    log.close()
    for clean_shutdown in (True, False):
        log = open_log(tmp_path, cfg, clean=clean_shutdown)
        assert read_all(log) == expected
        log.close()


# -- transactions ------------------------------------------------------------------


def _txn(log, pid: int, records, seq: int = 0) -> None:
    new = [NewRecord(k, v, (), T0) for k, v in records]
    log.append(bytearray(build_batch(new, producer_id=pid, producer_epoch=0, base_sequence=seq, is_transactional=True)),
               now=T0)


def _end(log, pid: int, commit: bool) -> None:
    log.append(bytearray(build_control_batch(pid, 0, commit, 0, T0)), now=T0)


def test_aborted_records_are_removed_and_never_shadow_committed_ones(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=10_000))
    append(log, [(b"a", b"plain", T0)])  # 0
    _txn(log, 7, [(b"a", b"aborted"), (b"b", b"aborted")])  # 1-2
    _txn(log, 8, [(b"c", b"committed")])  # 3
    _end(log, 7, False)  # 4
    _end(log, 8, True)  # 5
    log.roll()
    _txn(log, 9, [(b"d", b"open")])  # 6: undecided, past the last stable offset
    log.roll()
    log.set_high_watermark(log.log_end_offset)
    assert log.last_stable_offset == 6
    aborted_before = log.aborted_transactions(0, log.log_end_offset)
    clean(log, T0, force=True, producer_last_offsets={})
    kept = [(r.key, r.value) for r in records_of(b for b in read_batches(log) if not b.is_control)]
    assert kept == [(b"a", b"plain"), (b"c", b"committed"), (b"d", b"open")]
    markers = [(b.base_offset, b.is_control) for b in read_batches(log) if b.is_control]
    assert markers == [(4, True), (5, True)]
    # The cleaned segment answers read_committed readers as the old one did.
    assert log.aborted_transactions(0, log.log_end_offset) == aborted_before
    log.close()
    reopened = open_log(tmp_path, config(segment_bytes=10_000))
    assert reopened.aborted_transactions(0, reopened.log_end_offset) == aborted_before
    reopened.close()


def test_the_cleaner_stops_at_the_last_stable_offset(tmp_path):
    log = open_log(tmp_path, config(segment_bytes=10_000))
    _txn(log, 7, [(b"a", b"open")])  # 0: undecided
    append(log, [(b"a", b"later", T0)])  # 1
    log.roll()
    log.set_high_watermark(log.log_end_offset)
    assert cleanable_range(log, T0).first_uncleanable_offset == 0
    assert clean(log, T0, force=True) is None or [r.value for r in read_all(log)] == [b"open", b"later"]
