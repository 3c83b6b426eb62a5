"""LogSegment: bytes at the offsets it is given, Kafka's index rule, reads of
whole batches, truncation, recovery of a torn file, reopening."""

from __future__ import annotations

import os

import pytest

from pybroker.protocol.record_batch import RecordBatch, split_batches
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.storage.segment import BatchInfo, LogSegment, file_stem

from .test_layout import parse_log, parse_offset_index, parse_time_index

T0 = 1_700_000_000_000
BASE = 100


def make(base_offset: int, n: int = 1, ts: int = T0, size: int = 30) -> bytes:
    return build_batch(
        [NewRecord(b"k", bytes([n % 256]) * size, (), ts + i) for i in range(n)], base_offset=base_offset
    )


def open_segment(tmp_path, base=BASE, index_bytes=4096, index_interval=100, suffix="") -> LogSegment:
    return LogSegment(tmp_path, base, index_bytes=index_bytes, index_interval=index_interval, suffix=suffix)


def put(seg: LogSegment, *raws: bytes) -> None:
    """Append ``raws`` as one write, the way PartitionLog does."""
    infos, position = [], 0
    for raw in raws:
        b = RecordBatch(raw)
        infos.append(BatchInfo(position, b.base_offset, b.last_offset, len(raw), b.max_timestamp))
        position += len(raw)
    seg.append(b"".join(raws), infos)


def fill(seg: LogSegment, count: int, per: int = 2, ts_step: int = 10) -> list[bytes]:
    raws = []
    offset = seg.next_offset
    for i in range(count):
        raw = make(offset, per, ts=T0 + ts_step * i, size=20 + 7 * (i % 5))
        put(seg, raw)
        raws.append(raw)
        offset += per
    return raws


def state(seg: LogSegment):
    return (seg.size, seg.next_offset, seg.max_timestamp, seg.offset_of_max_timestamp, seg.first_batch_timestamp)


def test_file_names(tmp_path):
    seg = open_segment(tmp_path, base=1234)
    assert file_stem(1234) == "00000000000000001234"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "00000000000000001234.index",
        "00000000000000001234.log",
        "00000000000000001234.timeindex",
    ]
    seg.close()
    cleaned = open_segment(tmp_path, base=7, suffix=".cleaned")
    assert cleaned.path.name == "00000000000000000007.log.cleaned"
    cleaned.rename_suffix(".cleaned", ".swap")
    assert sorted(p.name for p in tmp_path.glob("*7.*")) == [
        "00000000000000000007.index.swap",
        "00000000000000000007.log.swap",
        "00000000000000000007.timeindex.swap",
    ]
    cleaned.close()


def test_append_writes_the_bytes_as_given(tmp_path):
    seg = open_segment(tmp_path)
    raws = fill(seg, 10)
    assert seg.path.read_bytes() == b"".join(raws)
    assert seg.next_offset == BASE + 20
    assert seg.size == sum(map(len, raws))
    assert seg.dirty
    seg.flush()
    assert not seg.dirty


def test_index_entries_every_interval_bytes(tmp_path):
    seg = open_segment(tmp_path, index_interval=100)
    raws = fill(seg, 30)
    seg.close()
    positions, since, expected = 0, 0, []
    for i, raw in enumerate(raws):
        if since > 100:
            expected.append((2 * i + 1, positions))
            since = 0
        since += len(raw)
        positions += len(raw)
    assert parse_offset_index(tmp_path / f"{file_stem(BASE)}.index") == expected
    times = parse_time_index(tmp_path / f"{file_stem(BASE)}.timeindex")
    assert times == [(T0 + 10 * (rel // 2) + 1, rel) for rel, _ in expected]


def test_read_whole_batches(tmp_path):
    seg = open_segment(tmp_path)
    raws = fill(seg, 8)
    info, data = seg.read(BASE, len(raws[0]) + len(raws[1]) + len(raws[2]) - 1, 10**9)
    assert info.base_offset == BASE and bytes(data) == raws[0] + raws[1]
    # From inside a batch, and a first batch bigger than max_bytes.
    info, data = seg.read(BASE + 5, 1, 10**9)
    assert info.base_offset == BASE + 4 and bytes(data) == raws[2]
    # Never a batch at or past max_offset.
    info, data = seg.read(BASE, 10**6, BASE + 6)
    assert bytes(data) == b"".join(raws[:3])
    assert seg.read(BASE + 6, 10**6, BASE + 6) is None
    assert seg.read(BASE + 16, 10**6, 10**9) is None


def test_find_and_find_timestamp(tmp_path):
    seg = open_segment(tmp_path, index_interval=0)
    fill(seg, 10)
    assert seg.find(BASE + 7).base_offset == BASE + 6
    assert seg.find(BASE + 20) is None
    assert seg.find_timestamp(T0 + 35).base_offset == BASE + 8  # batch 4: T0+40, T0+41
    assert seg.find_timestamp(T0 + 1).base_offset == BASE
    assert seg.find_timestamp(T0 + 92) is None


def test_can_hold(tmp_path):
    seg = open_segment(tmp_path, base=0, index_bytes=24, index_interval=0)
    assert seg.can_hold(10**6, 5, 100)  # an empty segment takes any batch
    put(seg, make(0, 1, size=10))
    assert not seg.can_hold(100, 1, 100)
    assert seg.can_hold(100, 1, 10**6)
    assert not seg.can_hold(10, 2**31, 10**6)  # relative offset past int32
    put(seg, make(1), make(2), make(3))
    assert not seg.can_hold(10, 10, 10**6)  # time index full (last slot kept for the roll)


def test_a_full_index_skips_entries_instead_of_failing(tmp_path):
    seg = open_segment(tmp_path, base=0, index_bytes=24, index_interval=0)
    put(seg, *[make(i, ts=T0 + i) for i in range(10)])
    assert seg.next_offset == 10 and seg.size == os.path.getsize(seg.path)
    assert seg.offset_index.entries <= 3 and seg.time_index.entries <= 1
    assert [b.base_offset for b in split_batches(seg.read(0, 10**6, 10**9)[1])[0]] == list(range(10))


def test_roll_rule_follows_record_timestamps(tmp_path):
    seg = open_segment(tmp_path)
    assert not seg.is_due_to_roll(T0 + 10**9, 1000, T0 + 10**9)  # empty
    put(seg, make(BASE, ts=T0))
    assert not seg.is_due_to_roll(T0 + 10**9, 1000, T0 + 1000)
    assert seg.is_due_to_roll(T0, 1000, T0 + 1001)
    # Without timestamps the segment's age counts.
    other = open_segment(tmp_path, base=0)
    put(other, make(0, ts=-1))
    assert not other.is_due_to_roll(other.created_ms + 1000, 1000)
    assert other.is_due_to_roll(other.created_ms + 1001, 1000)


def test_on_roll_records_the_max_timestamp_and_trims_the_indexes(tmp_path):
    seg = open_segment(tmp_path, index_interval=100)
    fill(seg, 12)
    seg.on_roll()
    stem = tmp_path / file_stem(BASE)
    times = parse_time_index(stem.with_suffix(".timeindex"))
    assert times[-1] == (T0 + 110 + 1, 23)
    assert os.path.getsize(stem.with_suffix(".index")) == 8 * seg.offset_index.entries
    assert os.path.getsize(stem.with_suffix(".timeindex")) == 12 * seg.time_index.entries


def test_truncate_to(tmp_path):
    seg = open_segment(tmp_path, index_interval=50)
    raws = fill(seg, 12)
    assert seg.truncate_to(BASE + 100) == 0
    cut = seg.truncate_to(BASE + 9)  # inside batch 8-9: it goes whole
    assert cut == sum(map(len, raws[4:]))
    assert seg.path.read_bytes() == b"".join(raws[:4])
    assert seg.next_offset == BASE + 8
    assert seg.max_timestamp == T0 + 31 and seg.offset_of_max_timestamp == BASE + 7
    assert all(seg.offset_index.entry(n)[0] < BASE + 8 for n in range(seg.offset_index.entries))
    # It is the active segment again: appends go on from the cut.
    more = fill(seg, 3)
    assert seg.path.read_bytes() == b"".join(raws[:4] + more)
    seg.truncate_to(BASE)
    assert seg.size == 0 and seg.next_offset == BASE and seg.first_batch_timestamp is None


def test_close_and_load_restore_the_state(tmp_path):
    seg = open_segment(tmp_path, index_interval=60)
    fill(seg, 15, ts_step=-3)  # timestamps going down: the max is the first
    fill(seg, 5, ts_step=50)
    before = state(seg)
    entries = seg.offset_index.entries
    seg.close()
    again = open_segment(tmp_path, index_interval=60)
    again.load()
    assert state(again) == before
    assert again.offset_index.entries == entries


def test_load_rebuilds_a_missing_index(tmp_path):
    seg = open_segment(tmp_path, index_interval=60)
    fill(seg, 20)
    seg.close()
    index = tmp_path / f"{file_stem(BASE)}.index"
    expected = parse_offset_index(index)
    assert expected
    index.unlink()
    again = open_segment(tmp_path, index_interval=60)
    again.load()
    again.close()
    assert parse_offset_index(index) == expected


@pytest.mark.parametrize("damage", ["zeros", "torn", "past the end", "not increasing"])
def test_load_rebuilds_a_bad_index(tmp_path, damage):
    seg = open_segment(tmp_path, index_interval=60)
    fill(seg, 20)
    seg.close()
    index = tmp_path / f"{file_stem(BASE)}.index"
    good = index.read_bytes()
    bad = {
        "zeros": good + bytes(80),
        "torn": good + b"\x01\x02\x03",
        "past the end": good + (10**6).to_bytes(4, "big") + (10**6).to_bytes(4, "big"),
        "not increasing": good + good[:8],
    }[damage]
    index.write_bytes(bad)
    again = open_segment(tmp_path, index_interval=60)
    again.load()
    again.close()
    assert index.read_bytes() == good


def test_recover_cuts_a_torn_tail(tmp_path):
    seg = open_segment(tmp_path, index_interval=60)
    raws = fill(seg, 10)
    seg.close()
    whole = b"".join(raws)
    keep = sum(map(len, raws[:6]))
    seg.path.write_bytes(whole[: keep + 17])
    again = open_segment(tmp_path, index_interval=60)
    assert again.recover() == 17
    assert again.path.read_bytes() == whole[:keep]
    assert again.next_offset == BASE + 12
    assert again.dirty  # the cut still has to reach the disk


@pytest.mark.parametrize("where", ["crc", "length", "offset going back"])
def test_recover_stops_at_the_first_bad_batch(tmp_path, where):
    seg = open_segment(tmp_path)
    raws = fill(seg, 6)
    seg.close()
    data = bytearray(b"".join(raws))
    at = sum(map(len, raws[:3]))
    if where == "crc":
        data[at + 70] ^= 0xFF
    elif where == "length":
        data[at + 8 : at + 12] = (10**6).to_bytes(4, "big")
    else:
        data[at : at + 8] = BASE.to_bytes(8, "big")
    seg.path.write_bytes(bytes(data))
    again = open_segment(tmp_path)
    assert again.recover() == len(data) - at
    batches, rest = parse_log(again.path)
    assert rest == 0 and [b.data for b in batches] == raws[:3]


def test_scan_headers_stops_before_a_partial_batch(tmp_path):
    seg = open_segment(tmp_path)
    raws = fill(seg, 3)
    seg.size -= 5  # as if the last batch were cut short
    assert [i.base_offset for i in seg.scan_headers()] == [BASE, BASE + 2]
    seg.size += 5
    seg.close()


def test_delete_removes_all_three_files(tmp_path):
    seg = open_segment(tmp_path)
    fill(seg, 3)
    seg.delete()
    assert list(tmp_path.iterdir()) == []
