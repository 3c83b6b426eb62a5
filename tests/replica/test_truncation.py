"""truncation.py: where a follower cuts a log that left its leader's.

Worked cases from KIP-101 / KIP-279 and Kafka's fetcher tests, the epoch
cache's answers checked against storage's LeaderEpochCache, and a model
of a whole partition history (random leaders, unclean elections, partial
copies) in which followers that run the protocol always end with their
leader's log."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pybroker.replica.truncation import (
    UNDEFINED,
    OutOfRange,
    Truncation,
    diverges,
    epoch_end,
    last_fetched_epoch,
    out_of_range,
    truncation_point,
)
from pybroker.storage.leader_epoch import LeaderEpochCache

# -- the epoch cache's answer ---------------------------------------------------------

ENTRIES = [(1, 0), (3, 10), (4, 15)]


def test_epoch_end_of_the_latest_epoch_is_the_log_end():
    assert epoch_end(ENTRIES, 4, 20) == (4, 20)


def test_epoch_end_of_an_older_epoch_is_the_next_start():
    assert epoch_end(ENTRIES, 1, 20) == (1, 10)
    assert epoch_end(ENTRIES, 3, 20) == (3, 15)


def test_an_epoch_between_known_ones_answers_the_one_below():
    assert epoch_end(ENTRIES, 2, 20) == (1, 10)


def test_an_epoch_below_all_answers_itself_and_the_first_start():
    assert epoch_end([(2, 5), (3, 10)], 1, 20) == (1, 5)


def test_unknown_answers():
    assert epoch_end(ENTRIES, 5, 20) == (UNDEFINED, UNDEFINED)
    assert epoch_end(ENTRIES, UNDEFINED, 20) == (UNDEFINED, UNDEFINED)
    assert epoch_end([], 3, 20) == (UNDEFINED, UNDEFINED)


@settings(deadline=None)  # the storage cache writes its checkpoint file
@given(
    starts=st.lists(st.integers(0, 50), max_size=6, unique=True),
    requested=st.integers(-1, 12),
    extra=st.integers(0, 10),
)
def test_epoch_end_answers_as_the_storage_cache_does(tmp_path_factory, starts, requested, extra):
    entries = list(zip(range(0, 2 * len(starts), 2), sorted(starts)))
    log_end = (entries[-1][1] if entries else 0) + extra
    cache = LeaderEpochCache(tmp_path_factory.mktemp("epochs") / "leader-epoch-checkpoint")
    for epoch, start in entries:
        cache.assign(epoch, start)
    assert epoch_end(entries, requested, log_end) == cache.end_offset_for(requested, log_end)


def test_last_fetched_epoch_skips_an_entry_at_the_log_end():
    assert last_fetched_epoch([], 0) == UNDEFINED
    assert last_fetched_epoch([(1, 0), (3, 10)], 12) == 3
    # Epoch 3 was led here but nothing written in it.
    assert last_fetched_epoch([(1, 0), (3, 10)], 10) == 1
    assert last_fetched_epoch([(3, 10)], 10) == UNDEFINED


# -- the leader's check ---------------------------------------------------------------


def test_divergence_seen_by_the_leader():
    assert not diverges((2, 10), 2, 10)  # same epoch, ends where the follower does
    assert not diverges((2, 12), 2, 10)  # the follower is behind
    assert diverges((2, 8), 2, 10)  # the follower has records of epoch 2 the leader lacks
    assert diverges((1, 10), 2, 10)  # the leader never had epoch 2


# -- the follower's cut -----------------------------------------------------------------


def test_same_epoch_cuts_at_the_shorter_end():
    # KIP-101: follower [(0,0)] to 10; the leader's epoch 0 ends at 5.
    assert truncation_point([(0, 0)], 10, 0, 5) == Truncation(5, True)
    # The follower ends the epoch first: nothing to cut.
    assert truncation_point([(0, 0), (2, 4)], 10, 0, 6) == Truncation(4, True)


def test_an_epoch_the_follower_never_had_cuts_to_its_own_older_epoch_and_asks_again():
    # KIP-279: follower epochs 1, 2, 4; the leader answers epoch 3 (which
    # the follower never saw): cut to where the follower's epoch 2 ends.
    assert truncation_point([(1, 0), (2, 5), (4, 8)], 12, 3, 9) == Truncation(8, False)


def test_an_answer_below_every_epoch_of_the_follower_cuts_where_its_epochs_begin():
    # The cache answers epoch 3 as ending where its first epoch (5) starts.
    assert truncation_point([(5, 10)], 20, 3, 12) == Truncation(10, True)


def test_a_follower_without_epochs_takes_the_leaders_offset():
    assert truncation_point([], 20, 3, 12) == Truncation(12, True)


def test_never_past_the_log_end():
    assert truncation_point([(0, 0)], 4, 0, 9) == Truncation(4, True)
    assert truncation_point([(0, 0), (1, 3)], 4, 1, 9) == Truncation(4, True)


def test_undefined_answers():
    # No offset: nothing is known, nothing is cut.
    assert truncation_point([(0, 0)], 7, UNDEFINED, UNDEFINED) == Truncation(7, True)
    # An offset without an epoch: the leader's offset.
    assert truncation_point([(0, 0)], 7, UNDEFINED, 3) == Truncation(3, True)


def test_out_of_range():
    assert out_of_range(log_end=50, leader_start=0, leader_end=40) == OutOfRange(40, False)
    assert out_of_range(log_end=5, leader_start=20, leader_end=40) == OutOfRange(20, True)
    assert out_of_range(log_end=30, leader_start=20, leader_end=40) == OutOfRange(UNDEFINED, False)


# -- a model of a partition's history ----------------------------------------------------
#
# A log is a list of (epoch, record id) by offset. A leader appends records
# of its epoch; a follower copies with the protocol: the leader checks its
# last fetched epoch (the leader's current epoch counted to its log end,
# as ``partition.end_offset_for`` does), the follower cuts where
# truncation_point says, and copies from its log end. Elections may pick
# any replica (unclean), so logs really diverge.


def entries_of(log: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for offset, (epoch, _) in enumerate(log):
        if not out or out[-1][0] != epoch:
            out.append((epoch, offset))
    return out


def leader_answer(log, current_epoch: int, requested: int) -> tuple[int, int]:
    entries = entries_of(log)
    if not entries or entries[-1][0] < current_epoch:
        entries.append((current_epoch, len(log)))
    return epoch_end(entries, requested, len(log))


def copy_step(follower: list, leader: list, current_epoch: int, most: int) -> str:
    """One Fetch and its consequence: 'diverged', 'copied' or 'caught up'."""
    entries = entries_of(follower)
    last = last_fetched_epoch(entries, len(follower))
    if last >= 0:
        found = leader_answer(leader, current_epoch, last)
        assert found[1] != UNDEFINED, "a follower's epoch is never newer than its leader's"
        if diverges(found, last, len(follower)):
            cut = truncation_point(entries, len(follower), *found)
            assert cut.offset < len(follower), "a divergence always cuts something"
            del follower[cut.offset :]
            return "diverged"
    assert len(follower) <= len(leader)
    if len(follower) == len(leader):
        return "caught up"
    follower.extend(leader[len(follower) : len(follower) + most])
    return "copied"


def catch_up(follower: list, leader: list, current_epoch: int) -> None:
    for _ in range(100):
        if copy_step(follower, leader, current_epoch, 3) == "caught up":
            return
    raise AssertionError("no convergence")


operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 4)),
        st.tuples(st.just("copy"), st.integers(0, 2), st.integers(1, 4)),
        st.tuples(st.just("elect"), st.integers(0, 2)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_followers_end_with_their_leaders_log(ops):
    logs: list[list[tuple[int, int]]] = [[], [], []]
    leader, epoch, next_id = 0, 0, 0
    for op in ops:
        if op[0] == "append":
            for _ in range(op[1]):
                logs[leader].append((epoch, next_id))
                next_id += 1
        elif op[0] == "copy":
            if op[1] != leader:
                copy_step(logs[op[1]], logs[leader], epoch, op[2])
        else:
            leader, epoch = op[1], epoch + 1
        for log in logs:
            epochs = [e for e, _ in log]
            assert epochs == sorted(epochs), "epochs never go back along a log"
    for r in range(3):
        if r != leader:
            catch_up(logs[r], logs[leader], epoch)
            assert logs[r] == logs[leader]
