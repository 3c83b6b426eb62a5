"""OffsetIndex and TimeIndex: against an in-memory model, on Kafka's exact
file format, and across simulated crashes (a preallocated file never trimmed)."""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from bisect import bisect_right

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pybroker.storage.index import CorruptIndexError, OffsetIndex, TimeIndex

BASE = 45


def offset_entries(path):
    data = path.read_bytes()
    assert len(data) % 8 == 0
    return [struct.unpack_from(">ii", data, i) for i in range(0, len(data), 8)]


def time_entries(path):
    data = path.read_bytes()
    assert len(data) % 12 == 0
    return [struct.unpack_from(">qi", data, i) for i in range(0, len(data), 12)]


def crash(index):
    """Stop using an index the way a killed process would: no trim."""
    index.close(trim=False)


@pytest.fixture
def offset_index(tmp_path):
    index = OffsetIndex(tmp_path / "00000000000000000045.index", BASE, max_index_size=30 * 8)
    yield index
    index.close()


@pytest.fixture
def time_index(tmp_path):
    index = TimeIndex(tmp_path / "00000000000000000045.timeindex", BASE, max_index_size=30 * 12)
    yield index
    index.close()


# -- offset index ---------------------------------------------------------


def test_offset_index_is_preallocated_to_whole_entries_on_first_append(tmp_path):
    path = tmp_path / "0.index"
    with OffsetIndex(path, 0, max_index_size=100) as index:
        assert path.stat().st_size == 0
        assert index.max_entries == 12
        assert index.entries == 0
        assert not index.is_full()
        index.append(0, 0)
        assert path.stat().st_size == 96
    assert path.stat().st_size == 8


def test_opening_writable_does_not_grow_an_existing_index(tmp_path):
    # The log opens every segment writable; only appends may preallocate.
    path = tmp_path / "0.index"
    with OffsetIndex(path, 0, max_index_size=80) as index:
        index.append(3, 0)
    reopened = OffsetIndex(path, 0, max_index_size=80)
    assert path.stat().st_size == 8
    assert reopened.max_entries == 10
    crash(reopened)
    with OffsetIndex(path, 0, max_index_size=80) as index:
        index.sanity_check()
        assert index.entries == 1


def test_max_index_size_smaller_than_an_entry_gives_a_full_index(tmp_path):
    with TimeIndex(tmp_path / "0.timeindex", 0, max_index_size=8) as index:
        assert index.max_entries == 0
        assert index.is_full()
        with pytest.raises(ValueError):
            index.maybe_append(5, 0)
    with OffsetIndex(tmp_path / "0.index", 0, max_index_size=7) as index:
        assert index.is_full()
        with pytest.raises(ValueError):
            index.append(0, 0)
    # An existing file keeps its entries whatever the size asked for.
    path = tmp_path / "1.index"
    path.write_bytes(struct.pack(">ii", 1, 0) + struct.pack(">ii", 2, 9))
    with OffsetIndex(path, 0, max_index_size=8) as index:
        assert index.entries == index.max_entries == 2
        assert index.lookup(2) == (2, 9)
    assert path.stat().st_size == 16


def test_lookup_on_empty_index_gives_base_offset_and_position_zero(offset_index):
    assert offset_index.lookup(BASE) == (BASE, 0)
    assert offset_index.lookup(BASE + 1000) == (BASE, 0)
    assert offset_index.last_offset == BASE


def test_lookup_finds_largest_entry_at_or_below_target(offset_index):
    for offset, position in [(50, 0), (60, 100), (70, 250)]:
        offset_index.append(offset, position)
    assert offset_index.lookup(49) == (BASE, 0)
    assert offset_index.lookup(50) == (50, 0)
    assert offset_index.lookup(59) == (50, 0)
    assert offset_index.lookup(60) == (60, 100)
    assert offset_index.lookup(10**12) == (70, 250)
    assert offset_index.last_offset == 70
    assert offset_index.entry(1) == (60, 100)


def test_entry_out_of_range(offset_index):
    with pytest.raises(IndexError):
        offset_index.entry(0)
    offset_index.append(BASE, 0)
    with pytest.raises(IndexError):
        offset_index.entry(1)
    with pytest.raises(IndexError):
        offset_index.entry(-1)


def test_offset_index_file_bytes_are_kafka_format(tmp_path):
    path = tmp_path / "00000000000000001000.index"
    entries = [(1000, 0), (1003, 4120), (1010, 8300), (70000, 2**31 - 1)]
    with OffsetIndex(path, 1000) as index:
        for offset, position in entries:
            index.append(offset, position)
        # Entries reach the file in pages or on flush; before trimming the
        # file is the preallocated size, entries first.
        index.flush()
        assert path.stat().st_size == 10 * 1024 * 1024
        assert offset_entries(path)[:5] == [(o - 1000, p) for o, p in entries] + [(0, 0)]
    assert path.read_bytes() == b"".join(struct.pack(">ii", o - 1000, p) for o, p in entries)


def test_append_rejects_offsets_not_above_the_last(offset_index):
    offset_index.append(51, 0)
    with pytest.raises(ValueError):
        offset_index.append(50, 1)
    with pytest.raises(ValueError):
        offset_index.append(51, 1)
    assert offset_index.entries == 1


def test_first_entry_may_be_the_base_offset(offset_index):
    offset_index.append(BASE, 0)
    offset_index.sanity_check(log_size=1)


def test_append_rejects_offsets_outside_int32_of_base(offset_index):
    assert not offset_index.can_append_offset(BASE - 1)
    assert not offset_index.can_append_offset(BASE + 2**31)
    assert offset_index.can_append_offset(BASE + 2**31 - 1)
    with pytest.raises(ValueError):
        offset_index.append(BASE - 1, 0)
    with pytest.raises(ValueError):
        offset_index.append(BASE + 2**31, 0)
    with pytest.raises(ValueError):
        offset_index.append(BASE + 1, -1)
    with pytest.raises(ValueError):
        offset_index.append(BASE + 1, 2**31)
    assert offset_index.entries == 0


def test_full_offset_index_refuses_appends(offset_index):
    for i in range(offset_index.max_entries):
        assert not offset_index.is_full()
        offset_index.append(BASE + i + 1, i)
    assert offset_index.is_full()
    with pytest.raises(ValueError):
        offset_index.append(BASE + 1000, 1000)
    assert offset_index.lookup(BASE + offset_index.max_entries) == (BASE + 30, 29)


def test_truncate_to_kafka_cases(tmp_path):
    # The cases of Kafka's OffsetIndexTest.truncate.
    with OffsetIndex(tmp_path / "0.index", 0, max_index_size=10 * 8) as index:
        for i in range(1, 10):
            index.append(i, i)
        index.truncate_to(12)
        assert index.lookup(10) == (9, 9)
        assert index.last_offset == 9
        index.append(10, 10)
        index.truncate_to(10)
        assert index.lookup(10) == (9, 9)
        assert index.last_offset == 9
        index.append(10, 10)
        index.truncate_to(9)
        assert index.lookup(10) == (8, 8)
        assert index.last_offset == 8
        index.append(9, 9)
        index.truncate_to(5)
        assert index.lookup(10) == (4, 4)
        assert index.last_offset == 4
        index.append(5, 5)
        index.truncate_to(0)
        assert index.entries == 0
        assert index.last_offset == 0


def test_truncate_to_between_entries_keeps_the_lower_one(offset_index):
    for offset in (50, 60, 70):
        offset_index.append(offset, offset)
    offset_index.truncate_to(65)
    assert [offset_index.entry(n) for n in range(offset_index.entries)] == [(50, 50), (60, 60)]


def test_truncate_after_trim_makes_room_again(tmp_path):
    path = tmp_path / "0.index"
    with OffsetIndex(path, 0, max_index_size=10 * 8) as index:
        for i in range(5):
            index.append(i, i * 10)
        index.trim()
        assert path.stat().st_size == 5 * 8
        assert index.is_full()
        with pytest.raises(ValueError):
            index.append(10, 100)
        index.truncate_to(3)
        assert path.stat().st_size == 3 * 8
        assert not index.is_full()
        assert index.max_entries == 10
        index.append(3, 35)
        assert path.stat().st_size == 10 * 8
        assert index.entries == 4


def test_reset_drops_everything_and_preallocates(tmp_path):
    path = tmp_path / "0.index"
    with OffsetIndex(path, 0, max_index_size=10 * 8) as index:
        for i in range(4):
            index.append(i, i)
        index.trim()
        index.reset()
        assert index.entries == 0
        assert index.max_entries == 10
        assert path.stat().st_size == 0
        index.append(7, 0)
        assert path.read_bytes()[8:] == bytes(72)
    assert offset_entries(path) == [(7, 0)]


def test_reopen_after_close_reads_the_same_entries(tmp_path):
    path = tmp_path / "0.index"
    with OffsetIndex(path, 100, max_index_size=64) as index:
        index.append(101, 0)
        index.append(105, 77)
    assert path.stat().st_size == 16
    with OffsetIndex(path, 100, max_index_size=64) as index:
        assert index.entries == 2
        assert index.last_offset == 105
        assert index.lookup(104) == (101, 0)
        index.sanity_check(log_size=78)
        # Reopened writable: appends continue, into a preallocated file again.
        index.append(106, 90)
        assert path.stat().st_size == 64
    assert offset_entries(path) == [(1, 0), (5, 77), (6, 90)]


def test_read_only_index_is_not_resized_and_refuses_writes(tmp_path):
    path = tmp_path / "0.index"
    with OffsetIndex(path, 0) as index:
        index.append(1, 0)
        index.append(2, 9)
    with OffsetIndex(path, 0, writable=False) as index:
        assert index.entries == 2
        assert index.lookup(5) == (2, 9)
        assert path.stat().st_size == 16
        assert index.is_full()
        for mutate in (lambda: index.append(3, 20), index.reset, lambda: index.truncate_to(1), index.trim):
            with pytest.raises(ValueError):
                mutate()
    assert path.stat().st_size == 16


def test_read_only_index_of_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        OffsetIndex(tmp_path / "0.index", 0, writable=False)


def test_crash_leaves_zeros_that_fail_sanity_check(tmp_path):
    path = tmp_path / "0.index"
    index = OffsetIndex(path, 0, max_index_size=10 * 8)
    index.append(0, 0)
    index.append(3, 100)
    crash(index)
    with OffsetIndex(path, 0, max_index_size=10 * 8) as reopened:
        # The zeros after the two real entries are read as entries, not hidden.
        assert reopened.entries == 10
        assert reopened.entry(2) == (0, 0)
        with pytest.raises(CorruptIndexError, match="offset"):
            reopened.sanity_check()
        reopened.reset()
        reopened.sanity_check()
        assert reopened.entries == 0


def test_crash_before_first_append_leaves_a_valid_empty_index(tmp_path):
    path = tmp_path / "0.index"
    crash(OffsetIndex(path, 0, max_index_size=10 * 8))
    with OffsetIndex(path, 0, max_index_size=10 * 8) as reopened:
        reopened.sanity_check()
        assert reopened.entries == 0


def test_preallocated_file_of_zeros_fails_sanity_check(tmp_path):
    # As Kafka leaves a new segment's index after a crash before any append.
    path = tmp_path / "0.index"
    path.write_bytes(bytes(80))
    with OffsetIndex(path, 0, max_index_size=10 * 8) as reopened:
        assert reopened.entries == 10
        with pytest.raises(CorruptIndexError):
            reopened.sanity_check()


def test_crash_after_truncation_does_not_resurrect_dropped_entries(tmp_path):
    path = tmp_path / "0.index"
    index = OffsetIndex(path, 0, max_index_size=10 * 8)
    for i in range(1, 6):
        index.append(i, i * 10)
    index.truncate_to(3)
    crash(index)
    with OffsetIndex(path, 0, max_index_size=10 * 8) as reopened:
        assert [reopened.entry(n) for n in range(reopened.entries)] == [(1, 10), (2, 20)]
        reopened.sanity_check(log_size=30)
        reopened.append(3, 25)
        reopened.flush()  # entries reach the file in pages or on flush
        crash(reopened)
    with OffsetIndex(path, 0, max_index_size=10 * 8) as reopened:
        # Slots 3 and 4 held (4, 40) and (5, 50) before the truncation; now zeros.
        assert [reopened.entry(n) for n in range(5)] == [(1, 10), (2, 20), (3, 25), (0, 0), (0, 0)]
        with pytest.raises(CorruptIndexError):
            reopened.sanity_check()


def test_file_size_not_a_multiple_of_entry_size(tmp_path):
    path = tmp_path / "0.index"
    path.write_bytes(struct.pack(">ii", 1, 0) + struct.pack(">ii", 2, 50) + b"\x00\x00\x03")
    with OffsetIndex(path, 0, writable=False) as index:
        assert index.entries == 2
        assert index.lookup(2) == (2, 50)
        with pytest.raises(CorruptIndexError, match="multiple of 8"):
            index.sanity_check()
    with OffsetIndex(path, 0, max_index_size=80) as index:
        assert index.entries == 2
        with pytest.raises(CorruptIndexError, match="multiple of 8"):
            index.sanity_check()
        index.reset()
        index.sanity_check()


@pytest.mark.parametrize(
    "entries, log_size, problem",
    [
        ([(1, 0), (1, 10)], None, "offset"),  # offsets repeat
        ([(5, 0), (4, 10)], None, "offset"),  # offsets go backwards
        ([(-1, 0)], None, "base offset"),  # before the segment
        ([(1, 10), (2, 5)], None, "position"),  # positions go backwards
        ([(1, -4)], None, "position"),
        ([(1, 0), (2, 100)], 100, "beyond"),  # points past the log's end
    ],
)
def test_sanity_check_rejects(tmp_path, entries, log_size, problem):
    path = tmp_path / "0.index"
    path.write_bytes(b"".join(struct.pack(">ii", *e) for e in entries))
    with OffsetIndex(path, 0, writable=False) as index, pytest.raises(CorruptIndexError, match=problem):
        index.sanity_check(log_size)


def test_sanity_check_accepts_a_valid_index(tmp_path):
    path = tmp_path / "0.index"
    path.write_bytes(b"".join(struct.pack(">ii", *e) for e in [(0, 0), (7, 4096), (9, 4096 * 2)]))
    with OffsetIndex(path, 0, writable=False) as index:
        index.sanity_check()
        index.sanity_check(log_size=4096 * 2 + 1)


def test_fetch_upper_bound_offset(offset_index):
    # The cases of Kafka's OffsetIndexTest.testFetchUpperBoundOffset.
    first, second, third, fourth = (BASE, 0), (BASE + 1, 10), (BASE + 2, 23), (BASE + 3, 37)
    assert offset_index.fetch_upper_bound_offset(first[1], 5) is None
    for offset, position in (first, second, third, fourth):
        offset_index.append(offset, position)
    assert offset_index.fetch_upper_bound_offset(first[1], 5) == second
    assert offset_index.fetch_upper_bound_offset(first[1], 10) == second
    assert offset_index.fetch_upper_bound_offset(first[1], 23) == third
    assert offset_index.fetch_upper_bound_offset(first[1], 22) == third
    assert offset_index.fetch_upper_bound_offset(second[1], 24) == fourth
    assert offset_index.fetch_upper_bound_offset(fourth[1], 1) is None
    assert offset_index.fetch_upper_bound_offset(first[1], 200) is None


def test_rename_and_delete(tmp_path):
    path = tmp_path / "0.index"
    index = OffsetIndex(path, 0, max_index_size=80)
    index.append(1, 0)
    index.rename(tmp_path / "0.index.deleted")
    assert not path.exists()
    assert index.path == tmp_path / "0.index.deleted"
    index.append(2, 10)
    index.flush()
    assert offset_entries(index.path)[:2] == [(1, 0), (2, 10)]
    index.delete()
    assert not index.path.exists()
    index.delete()  # already gone: fine
    index.close()


def test_closed_index_refuses_writes(tmp_path):
    index = OffsetIndex(tmp_path / "0.index", 0, max_index_size=80)
    index.append(1, 0)
    index.close()
    index.close()
    assert index.lookup(5) == (1, 0)
    with pytest.raises(ValueError, match="closed"):
        index.append(2, 10)


# -- time index -------------------------------------------------------------


def test_time_index_lookup(time_index):
    # The cases of Kafka's TimeIndexTest.testLookUp.
    assert time_index.lookup(100) == (-1, BASE)
    assert time_index.last_entry == (-1, BASE)
    for i in range(1, 5):
        time_index.maybe_append(i * 10, i * 10 + BASE)
    assert time_index.lookup(9) == (-1, BASE)
    assert time_index.lookup(10) == (10, 55)
    assert time_index.lookup(25) == (20, 65)
    assert time_index.lookup(30) == (30, 75)
    assert time_index.lookup(10**15) == (40, 85)
    assert [time_index.entry(n) for n in range(4)] == [(10, 55), (20, 65), (30, 75), (40, 85)]
    assert time_index.last_entry == (40, 85)


def test_time_index_keeps_timestamps_increasing(time_index):
    time_index.maybe_append(-1, BASE)  # no timestamp (magic 0): nothing indexed
    assert time_index.entries == 0
    time_index.maybe_append(100, BASE + 1)
    time_index.maybe_append(100, BASE + 2)  # same timestamp: ignored
    time_index.maybe_append(90, BASE + 3)  # earlier timestamp: ignored
    time_index.maybe_append(100, BASE + 1)  # the entry again (on roll): ignored
    assert time_index.entries == 1
    time_index.maybe_append(101, BASE + 1)  # later timestamp, same offset: indexed
    assert time_index.last_entry == (101, BASE + 1)
    with pytest.raises(ValueError):
        time_index.maybe_append(200, BASE)  # offset goes backwards
    with pytest.raises(ValueError):
        time_index.maybe_append(50, BASE)  # even when the timestamp would be ignored
    assert time_index.entries == 2


def test_time_index_offset_must_fit(time_index):
    with pytest.raises(ValueError):
        time_index.maybe_append(5, BASE - 1)
    with pytest.raises(ValueError):
        time_index.maybe_append(5, BASE + 2**31)


def test_time_index_reserves_the_last_slot_for_the_roll(time_index):
    for i in range(time_index.max_entries - 1):
        assert not time_index.is_full()
        time_index.maybe_append(i + 1, BASE + i)
    assert time_index.is_full()
    time_index.maybe_append(1000, BASE + 1000)  # the roll's entry fits
    assert time_index.entries == time_index.max_entries
    time_index.maybe_append(5, BASE + 1000)  # nothing to write: no error
    with pytest.raises(ValueError):
        time_index.maybe_append(1001, BASE + 1001)


def test_time_index_file_bytes_are_kafka_format(tmp_path):
    path = tmp_path / "00000000000000000500.timeindex"
    entries = [(1_700_000_000_000, 500), (1_700_000_000_250, 512), (2**63 - 1, 500 + 2**31 - 1)]
    with TimeIndex(path, 500, max_index_size=100) as index:
        for timestamp, offset in entries:
            index.maybe_append(timestamp, offset)
        assert path.stat().st_size == 96
    assert path.read_bytes() == b"".join(struct.pack(">qi", t, o - 500) for t, o in entries)
    assert time_entries(path) == [(t, o - 500) for t, o in entries]
    with TimeIndex(path, 500) as index:
        assert [index.entry(n) for n in range(index.entries)] == entries
        index.sanity_check()


def test_time_index_truncate_to(time_index):
    for i in range(1, 6):
        time_index.maybe_append(i * 10, BASE + i * 2)  # offsets 47, 49, ... 55
    time_index.truncate_to(BASE + 7)  # between entries: drops 53 and 55
    assert [time_index.entry(n) for n in range(time_index.entries)] == [(10, 47), (20, 49), (30, 51)]
    time_index.truncate_to(BASE + 6)  # on an entry: drops it
    assert time_index.last_entry == (20, 49)
    time_index.truncate_to(BASE + 4)
    assert time_index.last_entry == (10, 47)
    time_index.truncate_to(BASE + 10000)
    assert time_index.entries == 1
    time_index.maybe_append(15, BASE + 4)
    time_index.reset()
    assert time_index.entries == 0
    assert time_index.last_entry == (-1, BASE)


def test_time_index_crash_leaves_zeros_that_fail_sanity_check(tmp_path):
    path = tmp_path / "0.timeindex"
    index = TimeIndex(path, 0, max_index_size=10 * 12)
    index.maybe_append(1_700_000_000_000, 0)
    index.maybe_append(1_700_000_000_001, 4)
    crash(index)
    with TimeIndex(path, 0, max_index_size=10 * 12) as reopened:
        assert reopened.entries == 10
        with pytest.raises(CorruptIndexError):
            reopened.sanity_check()
        reopened.reset()
        reopened.sanity_check()
    # All zeros (Kafka preallocates on creation): still caught.
    path = tmp_path / "1.timeindex"
    path.write_bytes(bytes(120))
    with TimeIndex(path, 0, max_index_size=10 * 12) as reopened, pytest.raises(CorruptIndexError, match="timestamp"):
        reopened.sanity_check()


@pytest.mark.parametrize(
    "data, problem",
    [
        (struct.pack(">qi", 10, 1) + struct.pack(">qi", 20, 0), "offset"),
        (struct.pack(">qi", 20, 1) + struct.pack(">qi", 10, 2), "timestamp"),
        (struct.pack(">qi", 10, -1), "base offset"),
        (struct.pack(">qi", 10, 1) + b"\x00" * 5, "multiple of 12"),
    ],
)
def test_time_index_sanity_check_rejects(tmp_path, data, problem):
    path = tmp_path / "0.timeindex"
    path.write_bytes(data)
    with TimeIndex(path, 0, writable=False) as index, pytest.raises(CorruptIndexError, match=problem):
        index.sanity_check()


# -- both indexes against a model ----------------------------------------------


class OffsetIndexMachine(RuleBasedStateMachine):
    """Random appends, truncations, trims, reopens and crashes; the index must
    always answer as a sorted list of (offset, position) would."""

    MAX_ENTRIES = 20

    @initialize(base=st.integers(0, 2**40))
    def open(self, base):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "x.index")
        self.base = base
        self.model: list[tuple[int, int]] = []
        self.index = OffsetIndex(self.path, base, max_index_size=self.MAX_ENTRIES * 8 + 5)

    def teardown(self):
        if hasattr(self, "index"):
            self.index.close()
            shutil.rmtree(self.dir)

    def next_offset(self, gap):
        return (self.model[-1][0] if self.model else self.base) + gap

    @precondition(lambda self: len(self.model) < OffsetIndexMachine.MAX_ENTRIES)
    @rule(gap=st.integers(1, 1000), advance=st.integers(0, 5000))
    def append(self, gap, advance):
        offset = self.next_offset(gap if self.model else gap - 1)
        position = (self.model[-1][1] if self.model else 0) + advance
        if self.index.is_full():  # after a trim
            with pytest.raises(ValueError):
                self.index.append(offset, position)
            return
        self.index.append(offset, position)
        self.model.append((offset, position))

    @rule(back=st.integers(0, 1000))
    def append_out_of_order(self, back):
        if self.model:
            with pytest.raises(ValueError):
                self.index.append(self.model[-1][0] - back, 0)

    @rule(at=st.integers(-10, 30000))
    def lookup(self, at):
        at += self.base
        n = bisect_right([o for o, _ in self.model], at) - 1
        assert self.index.lookup(at) == (self.model[n] if n >= 0 else (self.base, 0))

    @rule(at=st.integers(-10, 30000))
    def truncate_to(self, at):
        at += self.base
        self.index.truncate_to(at)
        self.model = [e for e in self.model if e[0] < at]

    @rule()
    def trim(self):
        self.index.trim()
        assert os.path.getsize(self.path) == len(self.model) * 8

    @rule()
    def reopen(self):
        self.index.close()
        assert offset_entries(self.index.path) == [(o - self.base, p) for o, p in self.model]
        self.index = OffsetIndex(self.path, self.base, max_index_size=self.MAX_ENTRIES * 8 + 5)
        self.index.sanity_check()

    @rule()
    def crash_and_recover(self):
        crash(self.index)
        self.index = OffsetIndex(self.path, self.base, max_index_size=self.MAX_ENTRIES * 8 + 5)
        try:
            self.index.sanity_check()
        except CorruptIndexError:
            self.index.reset()
            for offset, position in self.model:
                self.index.append(offset, position)

    @invariant()
    def matches_model(self):
        if hasattr(self, "index"):
            assert self.index.entries == len(self.model)
            assert self.index.last_offset == (self.model[-1][0] if self.model else self.base)
            assert [self.index.entry(n) for n in range(self.index.entries)] == self.model


class TimeIndexMachine(RuleBasedStateMachine):
    """The same for the time index, fed (max timestamp so far, offset) the way
    a segment feeds it."""

    MAX_ENTRIES = 20

    @initialize(base=st.integers(0, 2**40))
    def open(self, base):
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "x.timeindex")
        self.base = base
        self.model: list[tuple[int, int]] = []
        self.index = TimeIndex(self.path, base, max_index_size=self.MAX_ENTRIES * 12 + 7)

    def teardown(self):
        if hasattr(self, "index"):
            self.index.close()
            shutil.rmtree(self.dir)

    @rule(dt=st.integers(-5, 100), gap=st.integers(0, 100))
    def maybe_append(self, dt, gap):
        last_ts, last_offset = self.model[-1] if self.model else (-1, self.base)
        timestamp, offset = max(0, last_ts + dt), last_offset + gap
        if timestamp > last_ts and len(self.model) >= self.index.max_entries:
            with pytest.raises(ValueError):
                self.index.maybe_append(timestamp, offset)
            return
        self.index.maybe_append(timestamp, offset)
        if timestamp > last_ts:
            self.model.append((timestamp, offset))

    @rule(at=st.integers(-10, 5000))
    def lookup(self, at):
        n = bisect_right([t for t, _ in self.model], at) - 1
        assert self.index.lookup(at) == (self.model[n] if n >= 0 else (-1, self.base))

    @rule(at=st.integers(-10, 5000))
    def truncate_to(self, at):
        at += self.base
        self.index.truncate_to(at)
        self.model = [e for e in self.model if e[1] < at]

    @rule()
    def trim(self):
        self.index.trim()

    @rule()
    def reopen(self):
        self.index.close()
        assert time_entries(self.index.path) == [(t, o - self.base) for t, o in self.model]
        self.index = TimeIndex(self.path, self.base, max_index_size=self.MAX_ENTRIES * 12 + 7)
        self.index.sanity_check()

    @invariant()
    def matches_model(self):
        if hasattr(self, "index"):
            assert [self.index.entry(n) for n in range(self.index.entries)] == self.model
            assert self.index.last_entry == (self.model[-1] if self.model else (-1, self.base))


_machine_settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestOffsetIndexModel = OffsetIndexMachine.TestCase
TestOffsetIndexModel.settings = _machine_settings
TestTimeIndexModel = TimeIndexMachine.TestCase
TestTimeIndexModel.settings = _machine_settings
