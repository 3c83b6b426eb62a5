"""LeaderEpochCache: the cases of Kafka's LeaderEpochFileCacheTest (restated),
persistence, and the monotonicity invariant under random operations."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybroker.storage.checkpoint import read_epochs, write_epochs
from pybroker.storage.leader_epoch import UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET, LeaderEpochCache

UNDEFINED = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "orders-0" / "leader-epoch-checkpoint"


@pytest.fixture
def cache(path):
    path.parent.mkdir()
    return LeaderEpochCache(path)


def filled(cache, *entries):
    for epoch, start in entries:
        cache.assign(epoch, start)
    return cache


# -- assign ----------------------------------------------------------------------


def test_empty_cache(cache, path):
    assert cache.entries == []
    assert cache.latest_epoch is None
    assert cache.latest_entry is None
    assert cache.earliest_entry is None
    assert not path.exists()


def test_assign_records_epoch_and_start(cache):
    cache.assign(2, 10)
    assert cache.latest_epoch == 2
    assert cache.entries == [(2, 10)]
    assert cache.earliest_entry == cache.latest_entry == (2, 10)
    assert cache.end_offset_for(2, 11) == (2, 11)


@pytest.mark.parametrize(
    "assigned, expected",
    [
        ([(2, 9), (2, 10)], [(2, 9)]),  # an epoch's start is never moved later
        ([(2, 6), (2, 7)], [(2, 6)]),
        ([(2, 9), (3, 9)], [(3, 9)]),  # new epoch at the same offset replaces the old
        ([(2, 6), (3, 5)], [(3, 5)]),  # offset goes back: the later assignment wins
        ([(1, 5), (2, 6), (1, 7)], [(1, 7)]),  # epoch goes back: later epochs dropped
        ([(5, 11), (6, 12), (7, 13), (7, 12)], [(5, 11), (7, 12)]),  # same epoch, earlier start
        ([(0, 0), (1, 0)], [(1, 0)]),
        ([(0, 0), (0, 1), (0, 2), (1, 3), (1, 4), (2, 6)], [(0, 0), (1, 3), (2, 6)]),
        ([(2, 6), (4, 20), (3, 10)], [(2, 6), (3, 10)]),
    ],
)
def test_assign_rules(cache, assigned, expected):
    filled(cache, *assigned)
    assert cache.entries == expected


def test_assign_rejects_negative_values(cache):
    with pytest.raises(ValueError):
        cache.assign(-1, 0)
    with pytest.raises(ValueError):
        cache.assign(0, -1)
    assert cache.entries == []


def test_assign_persists_only_on_change(cache, path):
    cache.assign(2, 6)
    assert read_epochs(path) == [(2, 6)]
    path.unlink()
    cache.assign(2, 7)  # ignored: nothing to write
    assert not path.exists()
    cache.assign(3, 8)
    assert read_epochs(path) == [(2, 6), (3, 8)]


def test_entries_are_a_copy(cache):
    cache.assign(1, 0)
    cache.entries.append((9, 9))
    assert cache.entries == [(1, 0)]


# -- end_offset_for ---------------------------------------------------------------


def test_end_offset_for_latest_epoch_is_log_end(cache):
    filled(cache, (2, 11), (2, 12))
    assert cache.end_offset_for(2, 14) == (2, 14)


@pytest.mark.parametrize("log_end_offset", [0, 73])
def test_end_offset_for_undefined_epoch(cache, log_end_offset):
    assert cache.end_offset_for(UNDEFINED_EPOCH, log_end_offset) == UNDEFINED
    filled(cache, (2, 11), (3, 12))
    assert cache.end_offset_for(UNDEFINED_EPOCH, log_end_offset) == UNDEFINED


@pytest.mark.parametrize("epoch", [0, 7])
def test_end_offset_for_on_empty_cache_is_undefined(cache, epoch):
    assert cache.end_offset_for(epoch, 0) == UNDEFINED


def test_end_offset_for_epoch_above_latest_is_undefined(cache):
    cache.assign(2, 100)
    assert cache.end_offset_for(3, 100) == UNDEFINED


def test_end_offset_for_epoch_below_earliest(cache):
    # The requested epoch comes back with the earliest start offset, so the
    # follower truncates to where the leader's log (now) begins.
    filled(cache, (5, 11), (6, 12), (7, 13))
    assert cache.end_offset_for(4, 0) == (4, 11)


def test_end_offset_for_previous_epoch_is_next_epochs_start(cache):
    filled(cache, (1, 11), (1, 12), (2, 13), (2, 14), (3, 15), (3, 16))
    assert cache.end_offset_for(2, 17) == (2, 15)
    assert cache.end_offset_for(1, 17) == (1, 13)
    assert cache.end_offset_for(3, 17) == (3, 17)


def test_end_offset_for_epoch_between_entries(cache):
    filled(cache, (0, 10), (2, 13), (4, 17))
    assert cache.end_offset_for(1, 0) == (0, 13)
    assert cache.end_offset_for(2, 0) == (2, 17)
    assert cache.end_offset_for(3, 0) == (2, 17)
    assert cache.end_offset_for(4, 20) == (4, 20)
    assert cache.end_offset_for(5, 20) == UNDEFINED


def test_end_offset_for_after_epoch_truncated_by_earlier_start(cache):
    filled(cache, (5, 11), (6, 12), (7, 13), (7, 12))
    assert cache.end_offset_for(5, 0) == (5, 12)
    assert cache.end_offset_for(6, 0) == (5, 12)


def test_end_offset_for_after_epoch_went_back(cache):
    filled(cache, (1, 5), (2, 6), (1, 7))
    assert cache.latest_epoch == 1
    assert cache.end_offset_for(1, 8) == (1, 8)
    assert cache.end_offset_for(2, 8) == UNDEFINED


def test_end_offsets_as_leaders_change(cache):
    filled(cache, (0, 0), (1, 0))
    assert cache.latest_epoch == 1
    assert cache.end_offset_for(1, 0) == (1, 0)
    assert cache.end_offset_for(0, 0) == (0, 0)  # epoch 0 was dropped: below earliest
    assert cache.end_offset_for(1, 5) == (1, 5)
    cache.assign(2, 5)
    assert cache.end_offset_for(2, 10) == (2, 10)
    assert cache.end_offset_for(1, 10) == (1, 5)
    assert cache.end_offset_for(0, 10) == (0, 0)


def test_end_offsets_as_follower_receives_messages(cache):
    filled(cache, (0, 0), (0, 1), (0, 2))
    assert cache.end_offset_for(0, 3) == (0, 3)
    filled(cache, (1, 3), (1, 4), (1, 5))
    assert cache.end_offset_for(1, 6) == (1, 6)
    filled(cache, (2, 6), (2, 7), (2, 8))
    assert cache.end_offset_for(2, 9) == (2, 9)
    assert cache.end_offset_for(0, 9) == (0, 3)
    assert cache.end_offset_for(1, 9) == (1, 6)


# -- truncation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "end_offset, expected",
    [
        (8, [(2, 6)]),  # on an epoch boundary: that epoch goes too
        (9, [(2, 6), (3, 8)]),  # between boundaries: the covering epoch stays
        (11, [(2, 6), (3, 8)]),
        (12, [(2, 6), (3, 8), (4, 11)]),  # past the last start: nothing
        (6, []),
        (0, []),
        (UNDEFINED_EPOCH_OFFSET, [(2, 6), (3, 8), (4, 11)]),  # undefined: nothing
    ],
)
def test_truncate_from_end(cache, path, end_offset, expected):
    filled(cache, (2, 6), (3, 8), (4, 11))
    cache.truncate_from_end(end_offset)
    assert cache.entries == expected
    assert read_epochs(path) == expected


@pytest.mark.parametrize(
    "start_offset, expected",
    [
        (8, [(3, 8), (4, 11)]),  # on a boundary: that epoch is kept as is
        (9, [(3, 9), (4, 11)]),  # between: the covering epoch now starts at 9
        (1, [(2, 6), (3, 8), (4, 11)]),  # before the first: nothing
        (6, [(2, 6), (3, 8), (4, 11)]),  # on the first: nothing
        (11, [(4, 11)]),
        (15, [(4, 15)]),  # past the last start: the last epoch moves up
        (UNDEFINED_EPOCH_OFFSET, [(2, 6), (3, 8), (4, 11)]),
    ],
)
def test_truncate_from_start(cache, path, start_offset, expected):
    filled(cache, (2, 6), (3, 8), (4, 11))
    cache.truncate_from_start(start_offset)
    assert cache.entries == expected
    assert read_epochs(path) == expected


def test_truncate_from_start_between_first_entries(cache):
    filled(cache, (0, 0), (1, 7), (2, 10))
    cache.truncate_from_start(5)
    assert cache.entries == [(0, 5), (1, 7), (2, 10)]


def test_truncations_that_change_nothing_do_not_write(cache, path):
    filled(cache, (2, 6), (3, 8))
    path.unlink()
    cache.truncate_from_end(9)
    cache.truncate_from_start(6)
    cache.truncate_from_start(2)
    assert not path.exists()


def test_truncations_on_empty_cache(cache, path):
    cache.truncate_from_start(7)
    cache.truncate_from_end(7)
    assert cache.entries == []
    assert not path.exists()


def test_truncation_is_checkpointed(cache, path):
    filled(cache, (2, 6), (3, 8), (4, 11))
    cache.truncate_from_end(11)
    cache.truncate_from_start(8)
    assert read_epochs(path) == [(3, 8)]


# -- epoch_for_offset, clear, delete, persistence ----------------------------------


@pytest.mark.parametrize("offset, epoch", [(25, 1), (20, 1), (30, 5), (50, 5), (10, 0), (19, 0), (5, None)])
def test_epoch_for_offset(cache, offset, epoch):
    filled(cache, (0, 10), (1, 20), (5, 30))
    assert cache.epoch_for_offset(offset) == epoch


def test_epoch_for_offset_on_empty_cache(cache):
    assert cache.epoch_for_offset(0) is None


def test_clear_writes_an_empty_checkpoint(cache, path):
    filled(cache, (2, 6), (3, 8))
    cache.clear()
    assert cache.entries == []
    assert path.read_bytes() == b"0\n0\n"


def test_delete_removes_the_file(cache, path):
    cache.assign(2, 6)
    cache.delete()
    assert cache.entries == []
    assert not path.exists()
    cache.delete()


def test_persists_across_instances(cache, path):
    filled(cache, (2, 6), (3, 8))
    assert path.read_bytes() == b"0\n2\n2 6\n3 8\n"
    reopened = LeaderEpochCache(path)
    assert reopened.entries == [(2, 6), (3, 8)]
    assert reopened.end_offset_for(2, 100) == (2, 8)


def test_loading_a_non_monotonic_file_applies_the_rules(tmp_path):
    path = tmp_path / "leader-epoch-checkpoint"
    write_epochs(path, [(1, 5), (3, 10), (2, 12), (4, 11)])
    assert LeaderEpochCache(path).entries == [(1, 5), (4, 11)]
    # Loading alone does not rewrite the file.
    assert read_epochs(path) == [(1, 5), (3, 10), (2, 12), (4, 11)]


def test_path_can_follow_a_moved_directory(cache, path, tmp_path):
    cache.assign(1, 0)
    moved = tmp_path / "orders-0.abc-delete"
    path.parent.rename(moved)
    cache.path = moved / "leader-epoch-checkpoint"
    cache.assign(2, 10)
    assert read_epochs(moved / "leader-epoch-checkpoint") == [(1, 0), (2, 10)]


# -- random operations -----------------------------------------------------------------

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("assign"), st.integers(0, 8), st.integers(0, 60)),
        st.tuples(st.just("truncate_from_end"), st.integers(-1, 60)),
        st.tuples(st.just("truncate_from_start"), st.integers(-1, 60)),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(operations=OPERATIONS)
def test_random_operations_keep_invariants_and_persist(tmp_path_factory, operations):
    path = tmp_path_factory.mktemp("p") / "leader-epoch-checkpoint"
    cache = LeaderEpochCache(path)
    for name, *args in operations:
        getattr(cache, name)(*args)
        entries = cache.entries
        assert all(a[0] < b[0] and a[1] < b[1] for a, b in pairwise(entries))
        if name == "assign":
            assert entries[-1] == (args[0], args[1]) or (entries[-1][0] == args[0] and entries[-1][1] <= args[1])
        assert read_epochs(path) == entries or (not path.exists() and entries == [])
        assert LeaderEpochCache(path).entries == entries
        for epoch in range(-1, 10):
            got = cache.end_offset_for(epoch, 100)
            assert got == reference_end_offset_for(entries, epoch, 100)


def reference_end_offset_for(entries, requested, log_end_offset):
    """Kafka's endOffsetFor, written as plainly as possible."""
    if requested == UNDEFINED_EPOCH:
        return UNDEFINED
    if entries and entries[-1][0] == requested:
        return requested, log_end_offset
    higher = [e for e in entries if e[0] > requested]
    if not higher:
        return UNDEFINED
    floor = [e for e in entries if e[0] <= requested]
    return (floor[-1][0] if floor else requested), higher[0][1]
