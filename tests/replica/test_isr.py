"""The leader's replica state (isr.py) step by step: Kafka's caught-up
clock, expand and shrink decisions, one change in flight, and the
high-watermark rule."""

from pybroker.replica.isr import EXPAND, SHRINK, UNKNOWN, FollowerState, LeaderState

LAG = 30_000
T0 = 1_000_000


def leader(isr=(1, 2, 3), replicas=(1, 2, 3), epoch_start=0, version=7) -> LeaderState:
    return LeaderState(1, replicas, isr, leader_epoch=4, version=version, epoch_start=epoch_start, now_ms=T0)


def hw(state: LeaderState, current=0, leo=100, own=None, now=T0, min_insync=1, log_start=0, alive=lambda r: True):
    return state.high_watermark(current, log_start, leo, leo if own is None else own, now, LAG, min_insync, alive)


# -- the caught-up clock (Replica.updateFetchStateOrThrow) -------------------------


def test_a_fetch_reaching_the_leaders_log_end_is_caught_up_now():
    f = FollowerState()
    f.fetched(50, T0, leader_leo=50)
    assert f.last_caught_up_ms == T0 and f.leo == 50


def test_a_fetch_reaching_the_log_end_of_the_previous_fetch_is_caught_up_then():
    f = FollowerState()
    f.fetched(40, T0, leader_leo=50)  # behind: not caught up (-1 before: the previous fetch's time, 0)
    assert f.last_caught_up_ms == 0
    f.fetched(50, T0 + 100, leader_leo=60)  # reached what the leader had at T0
    assert f.last_caught_up_ms == T0
    f.fetched(55, T0 + 200, leader_leo=70)  # not even the previous log end (60)
    assert f.last_caught_up_ms == T0


def test_caught_up_until_the_lag_time_passes_or_at_the_log_end():
    f = FollowerState(last_caught_up_ms=T0)
    f.leo = 10
    assert f.caught_up(20, T0 + LAG, LAG)
    assert not f.caught_up(20, T0 + LAG + 1, LAG)
    assert f.caught_up(10, T0 + 10 * LAG, LAG)  # at the leader's log end, whatever the clock


# -- expand ----------------------------------------------------------------------


def test_a_follower_joins_at_the_high_watermark_and_the_epoch_start():
    state = leader(isr=(1, 2), epoch_start=30)
    assert state.followers[3].last_caught_up_ms == 0  # outside the ISR: never caught up
    assert state.follower_fetched(3, 25, T0, leader_leo=40, high_watermark=20) is None  # below the epoch start
    assert state.follower_fetched(3, 30, T0, leader_leo=40, high_watermark=35) is None  # below the high watermark
    change = state.follower_fetched(3, 35, T0, leader_leo=40, high_watermark=35)
    assert change.kind == EXPAND and change.isr == (1, 2, 3) and change.replicas == (3,)
    assert (change.version, change.leader_epoch, change.old_isr) == (7, 4, (1, 2))
    assert state.pending is change
    assert state.maximal_isr == {1, 2, 3} and state.isr == {1, 2}


def test_no_expand_for_a_dead_broker_an_isr_member_or_a_stranger():
    state = leader(isr=(1, 2))
    assert state.follower_fetched(3, 100, T0, 100, 100, alive=False) is None
    assert state.follower_fetched(2, 100, T0, 100, 100) is None
    assert state.follower_fetched(9, 100, T0, 100, 100) is None
    assert state.pending is None


def test_one_change_in_flight():
    state = leader(isr=(1,))
    first = state.follower_fetched(2, 100, T0, 100, 100)
    assert first is not None
    assert state.follower_fetched(3, 100, T0, 100, 100) is None
    assert state.maybe_shrink(T0 + 10 * LAG, 100, LAG) is None
    assert state.committed(first, 8)
    assert state.isr == {1, 2} and state.version == 8 and state.pending is None
    second = state.follower_fetched(3, 100, T0, 100, 100)
    assert second.isr == (1, 2, 3) and second.version == 8


def test_a_commit_of_a_replaced_change_is_ignored():
    state = leader(isr=(1,))
    change = state.follower_fetched(2, 100, T0, 100, 100)
    state.apply_state((1, 3), 9)  # a newer state arrived first
    assert not state.committed(change, 8)
    assert state.isr == {1, 3} and state.version == 9 and state.pending is None


# -- shrink ----------------------------------------------------------------------


def test_followers_not_caught_up_for_the_lag_time_leave_the_isr_but_never_the_leader():
    state = leader()
    state.follower_fetched(2, 100, T0 + 1000, leader_leo=100, high_watermark=100)  # caught up at T0+1000
    assert state.maybe_shrink(T0 + LAG, 100, LAG) is None
    change = state.maybe_shrink(T0 + LAG + 1, 120, LAG)
    assert change.kind == SHRINK and change.isr == (1, 2) and change.replicas == (3,)
    assert "follower 3 not caught up for 30001 ms" in change.reason
    assert state.maximal_isr == {1, 2, 3}  # counted until written
    state.committed(change, 8)
    assert state.maybe_shrink(T0 + 10 * LAG, 120, LAG).isr == (1,)


def test_a_follower_at_the_log_end_is_in_sync_however_long_ago_it_caught_up():
    state = leader(isr=(1, 2), replicas=(1, 2))
    state.follower_fetched(2, 100, T0, 100, 100)
    assert state.maybe_shrink(T0 + 100 * LAG, 100, LAG) is None


# -- the high watermark ------------------------------------------------------------


def test_the_high_watermark_is_the_smallest_log_end_of_the_maximal_isr():
    state = leader()
    assert hw(state) == 0  # nobody fetched: unknown log ends
    state.follower_fetched(2, 60, T0, 100, 0)
    assert hw(state) == 0
    state.follower_fetched(3, 40, T0, 100, 0)
    assert hw(state) == 40
    assert hw(state, current=50) == 50  # never back
    assert hw(state, own=30) == 30  # the leader's fsynced offset counts too


def test_a_pending_shrink_does_not_advance_it_a_pending_expand_holds_it_at_once():
    state = leader(isr=(1, 2), replicas=(1, 2, 3))
    state.follower_fetched(2, 90, T0, 100, 0)
    assert hw(state) == 90
    change = state.follower_fetched(3, 95, T0, 100, 90)
    assert change.kind == EXPAND
    state.follower_fetched(2, 100, T0, 100, 90)
    assert hw(state, current=90) == 95  # 3 counts before it is written
    state.committed(change, 8)
    shrink = state.maybe_shrink(T0 + 2 * LAG, 110, LAG)
    assert shrink.replicas == (2, 3)
    assert hw(state, current=95, leo=110, now=T0 + 2 * LAG) == 95  # the old ISR still counts
    state.committed(shrink, 9)
    assert hw(state, current=95, leo=110, now=T0 + 2 * LAG) == 110


def test_a_caught_up_follower_outside_the_isr_holds_it_back_while_alive():
    state = leader(isr=(1,), replicas=(1, 2))
    state.follower_fetched(2, 100, T0, leader_leo=100, high_watermark=100)  # caught up; expand proposed
    state.apply_state((1,), 8)  # (refused: the newer state keeps it out)
    state.followers[2].leo = 80
    assert hw(state, current=0, leo=120, now=T0 + 10) == 80
    assert hw(state, current=0, leo=120, now=T0 + 10, alive=lambda r: False) == 120
    assert hw(state, current=0, leo=120, now=T0 + LAG + 1) == 120  # no longer caught up


def test_it_stays_while_the_committed_isr_is_below_min_insync():
    state = leader(isr=(1,), replicas=(1, 2, 3))
    assert hw(state, min_insync=2) == 0
    assert hw(state, min_insync=1) == 100
    # min.insync.replicas above the replication factor counts as the factor.
    alone = LeaderState(1, (1, 2), (1, 2), 4, 0, 0, T0)
    alone.followers[2].leo = 100
    assert hw(alone, min_insync=3) == 100


def test_it_stays_within_the_log():
    state = leader(isr=(1,), replicas=(1, 2))
    assert hw(state, current=10, log_start=10, leo=100) == 100
    assert hw(state, current=0, leo=100, own=UNKNOWN) == 0


def test_a_new_epoch_keeps_log_ends_and_restarts_the_clocks():
    state = leader(isr=(1, 2, 3))
    state.follower_fetched(2, 70, T0, 100, 0)
    state.follower_fetched(3, 100, T0, 100, 0)
    state.new_epoch(5, 9, (1, 2), (1, 2, 3), epoch_start=100, now_ms=T0 + 5 * LAG)
    assert (state.leader_epoch, state.version, state.epoch_start, state.isr) == (5, 9, 100, {1, 2})
    f2, f3 = state.followers[2], state.followers[3]
    assert (f2.leo, f2.last_caught_up_ms, f2.last_fetch_ms, f2.last_fetch_leader_leo) == (
        70,
        T0 + 5 * LAG,
        T0 + 5 * LAG,
        100,
    )
    assert (f3.leo, f3.last_caught_up_ms) == (100, 0)
