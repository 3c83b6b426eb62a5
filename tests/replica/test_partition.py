"""A leader partition with followers, without sockets: becoming leader,
the followers' fetches, ISR changes proposed and committed, the durable
high watermark, and acks=all's outcomes (Kafka's DelayedProduce)."""

import logging

import pytest
import trio
import trio.testing

from pybroker.cluster.model import PartitionInfo, PartitionState
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.record_batch import RecordBatch
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.replica import ReplicaManager, Role, partition
from pybroker.replica.isr import EXPAND, SHRINK
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog

T0 = 1_000_000
LAG = 10_000


def batch(n=1) -> RecordBatch:
    return RecordBatch(bytearray(build_batch([NewRecord(value=b"v")] * n)))


def info(isr=(0, 1, 2), epoch=4, version=0, leader=0, replicas=(0, 1, 2)) -> PartitionInfo:
    return PartitionInfo(0, list(replicas), PartitionState(leader, epoch, list(isr), 3, version))


class Writer:
    """Collects proposals, as the ISR writer receives them."""

    def __init__(self):
        self.proposed = []

    def propose(self, part, change):
        self.proposed.append(change)


@pytest.fixture
def clock(monkeypatch):
    now = [T0]
    monkeypatch.setattr(partition, "now_ms", lambda: now[0])
    return now


def hosted(tmp_path, state=None, role=Role.LEADER, **config):
    replicas = ReplicaManager(0, producer_expiration_ms=86_400_000, replica_lag_time_max_ms=LAG)
    replicas.isr_writer = Writer()
    plog = PartitionLog(tmp_path / "t-0", LogConfig(**config))
    part = replicas.add("t", 0, plog, state or info())
    part.become(state or info(), role)
    return replicas, part


def code_of(fn, *args, **kwargs) -> ErrorCode:
    with pytest.raises(KafkaError) as exc:
        fn(*args, **kwargs)
    return exc.value.code


# -- becoming leader ------------------------------------------------------------------


def test_a_replicated_partition_is_a_follower_until_told(tmp_path, clock):
    replicas = ReplicaManager(0, producer_expiration_ms=1)
    part = replicas.add("t", 0, PartitionLog(tmp_path / "t-0", LogConfig()), info())
    assert part.role is Role.FOLLOWER and part.leader_state is None
    assert part.log.epochs.entries == []


def test_a_new_leader_records_its_epoch_before_serving(tmp_path, clock):
    _replicas, part = hosted(tmp_path, info(epoch=0), write_caching=True)
    part.append_as_leader(batch(3), now=T0)
    part.follower_fetched(1, 3, T0)
    part.follower_fetched(2, 3, T0)
    assert part.high_watermark == 3
    part.become(info(epoch=1), Role.FOLLOWER)
    part.become(info(epoch=2), Role.LEADER)  # elected again, with nothing appended meanwhile
    assert part.log.epochs.entries == [(0, 0), (2, 3)]
    assert part.epoch_start == 3
    assert part.end_offset_for_epoch(0) == (0, 3)
    assert part.end_offset_for_epoch(1) == (0, 3)
    assert part.end_offset_for_epoch(2) == (2, 3)
    assert part.end_offset_for_epoch(3) == (-1, -1)


def test_an_older_state_is_ignored_the_same_one_may_change_the_role(tmp_path, clock):
    _replicas, part = hosted(tmp_path, info(epoch=5, version=3))
    part.become(info(epoch=5, version=2, isr=(0,)), Role.LEADER)
    part.become(info(epoch=4, version=9, leader=1), Role.FOLLOWER)
    assert (part.info.leader_epoch, part.info.state.version, part.role) == (5, 3, Role.LEADER)
    assert part.isr == {0, 1, 2}
    part.become(part.info, Role.FOLLOWER)  # the session expired
    assert part.role is Role.FOLLOWER and part.leader_state is None
    part.become(part.info, Role.LEADER)  # registered again, the same state
    assert part.log.epochs.entries == [(5, 0)]
    assert part.leader_state is not None


def test_the_same_leader_at_a_newer_state_takes_its_isr(tmp_path, clock, caplog):
    _replicas, part = hosted(tmp_path, info(version=1))
    with caplog.at_level(logging.INFO, logger="pybroker.replica"):
        part.become(info(version=2, isr=(0, 2)), Role.LEADER)
    assert part.isr == {0, 2} and part.leader_state.version == 2
    assert "t-0: ISR 0,1,2 -> 0,2 (leader epoch 4)" in caplog.text


# -- the followers and the ISR --------------------------------------------------------


def test_fetches_advance_the_high_watermark_and_expand_the_isr(tmp_path, clock, caplog):
    replicas, part = hosted(tmp_path, info(isr=(0, 1)), write_caching=True)
    part.append_as_leader(batch(5), now=T0)
    part.follower_fetched(2, 5, T0)  # outside the ISR, at the high watermark (0): joins
    (expand,) = replicas.isr_writer.proposed
    assert (expand.kind, expand.isr, expand.version) == (EXPAND, (0, 1, 2), 0)
    part.follower_fetched(1, 5, T0)
    assert part.high_watermark == 5  # 2 counted at once, and it has 5
    with caplog.at_level(logging.INFO, logger="pybroker.replica"):
        assert part.isr_change_committed(expand, 1)
    assert part.isr == {0, 1, 2}
    assert (part.info.isr, part.info.state.version, part.info.state.controller_epoch) == ([0, 1, 2], 1, 3)
    assert "t-0: ISR 0,1 -> 0,1,2 (leader epoch 4): follower 2 caught up to offset 5" in caplog.text
    assert not part.isr_change_committed(expand, 1)  # once


def test_a_follower_below_the_epoch_start_does_not_join(tmp_path, clock):
    replicas, part = hosted(tmp_path, info(epoch=0, isr=(0,)), write_caching=True)
    part.append_as_leader(batch(4), now=T0)
    part.become(info(epoch=1, isr=(0,)), Role.LEADER)
    assert part.epoch_start == 4 and part.high_watermark == 4
    part.follower_fetched(1, 4, T0)
    assert [c.isr for c in replicas.isr_writer.proposed] == [(0, 1)]
    replicas.isr_writer.proposed.clear()
    part.become(info(epoch=2, isr=(0,)), Role.LEADER)
    part.append_as_leader(batch(1), now=T0)  # epoch 2 starts at 4; the high watermark stays 4 for 1 (caught up)
    part.follower_fetched(2, 3, T0)
    assert replicas.isr_writer.proposed == []


def test_the_shrink_check_drops_followers_lagging_for_the_lag_time(tmp_path, clock, caplog):
    replicas, part = hosted(tmp_path, info(), write_caching=True)
    part.append_as_leader(batch(2), now=T0)
    part.follower_fetched(1, 2, T0 + 100)
    assert replicas.shrink_isrs(T0 + LAG) == 0
    assert replicas.shrink_isrs(T0 + LAG + 1) == 1
    (shrink,) = replicas.isr_writer.proposed
    assert (shrink.kind, shrink.isr) == (SHRINK, (0, 1))
    assert part.high_watermark == 0  # 2 still counts until written
    clock[0] = T0 + LAG + 1
    with caplog.at_level(logging.INFO, logger="pybroker.replica"):
        part.isr_change_committed(shrink, 1)
    assert part.high_watermark == 2
    assert "t-0: ISR 0,1,2 -> 0,1 (leader epoch 4): follower 2 not caught up for 10001 ms" in caplog.text


def test_min_insync_stops_the_high_watermark(tmp_path, clock):
    replicas, part = hosted(tmp_path, info(isr=(0,)), write_caching=True, min_insync_replicas=2)
    part.append_as_leader(batch(2), now=T0)
    assert part.high_watermark == 0  # alone in the ISR of three, min.insync 2
    assert code_of(replicas.append, "t", 0, batch(), now=T0, acks=-1) == ErrorCode.NOT_ENOUGH_REPLICAS
    part.follower_fetched(1, 2, T0)
    (expand,) = replicas.isr_writer.proposed
    assert part.high_watermark == 0  # a pending expand does not lift the minimum
    part.isr_change_committed(expand, 1)
    assert part.high_watermark == 2


def test_list_offsets_latest_waits_for_the_epoch_start(tmp_path, clock):
    _replicas, part = hosted(tmp_path, info(epoch=0), write_caching=True)
    part.append_as_leader(batch(3), now=T0)
    part.become(info(epoch=1), Role.FOLLOWER)
    part.become(info(epoch=2), Role.LEADER)  # a new leader whose high watermark is still 0
    assert code_of(part.fetch_offset_for_timestamp, -1) == ErrorCode.OFFSET_NOT_AVAILABLE
    assert code_of(part.fetch_offset_for_timestamp, T0 + 10**9) == ErrorCode.OFFSET_NOT_AVAILABLE
    assert part.fetch_offset_for_timestamp(-2) == (-1, 0, 0)
    assert part.fetch_offset_for_timestamp(-1, replica_id=-2) == (-1, 3, 2)
    part.follower_fetched(1, 3, T0)
    part.follower_fetched(2, 3, T0)
    assert part.fetch_offset_for_timestamp(-1) == (-1, 3, 2)


# -- the durable high watermark ---------------------------------------------------------


def test_only_fsynced_records_count_and_a_flush_round_moves_it(tmp_path, clock):
    replicas, part = hosted(tmp_path, info(isr=(0, 1), replicas=(0, 1)))

    async def main():
        part.follower_fetched(1, 0, T0)
        part.append_as_leader(batch(2), now=T0)
        part.follower_fetched(1, 2, T0)
        assert (part.log.recovery_point, part.high_watermark) == (0, 0)  # not fsynced here yet
        rounds = replicas.flusher.rounds
        async with trio.open_nursery() as nursery:
            nursery.start_soon(replicas.run)
            with trio.fail_after(10):
                while part.high_watermark < 2:
                    await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        assert part.log.recovery_point == 2 and replicas.flusher.rounds == rounds + 1

    trio.run(main)


def test_write_caching_counts_the_log_end(tmp_path, clock):
    _replicas, part = hosted(tmp_path, info(isr=(0, 1), replicas=(0, 1)), write_caching=True)
    part.append_as_leader(batch(2), now=T0)
    part.follower_fetched(1, 2, T0)
    assert (part.log.recovery_point, part.high_watermark) == (0, 2)


# -- acks=all -------------------------------------------------------------------------------


def committed(replicas, done, timeout_ms=None, act=None):
    """until_committed for ``done``, with ``act()`` once it waits."""
    out = {}

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(replicas.run)

            async def wait():
                out["failures"] = await replicas.until_committed(done, timeout_ms)

            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            if act is not None:
                act()
            with trio.fail_after(10):
                while "failures" not in out:
                    await trio.sleep(0.001)
            nursery.cancel_scope.cancel()

    trio.run(main)
    return {a: e.code for a, e in out["failures"].items()}


def test_acks_all_is_answered_when_the_isr_has_it(tmp_path, clock):
    replicas, part = hosted(tmp_path, write_caching=True)
    done = replicas.append("t", 0, batch(2), now=T0, acks=-1)
    assert done.leader_epoch == 4

    def fetch():
        part.follower_fetched(1, 2, T0)
        part.follower_fetched(2, 2, T0)

    assert committed(replicas, [done], 5000, fetch) == {}


def test_acks_all_times_out(tmp_path, clock):
    replicas, _part = hosted(tmp_path, write_caching=True)
    done = replicas.append("t", 0, batch(2), now=T0, acks=-1)
    assert committed(replicas, [done], 0) == {done: ErrorCode.REQUEST_TIMED_OUT}
    assert committed(replicas, [done], 50) == {done: ErrorCode.REQUEST_TIMED_OUT}


def test_acks_all_after_the_isr_fell_below_min_insync(tmp_path, clock):
    replicas, part = hosted(tmp_path, info(isr=(0, 1)), write_caching=True, min_insync_replicas=2)
    done = replicas.append("t", 0, batch(2), now=T0, acks=-1)
    part.follower_fetched(1, 2, T0)
    assert part.high_watermark == 2
    clock[0] = T0 + 1
    part.become(info(isr=(0,), version=1), Role.LEADER)  # the ISR shrank before the waiter looked
    assert committed(replicas, [done], 5000) == {done: ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND}


@pytest.mark.parametrize("change", ["follower", "new epoch", "deleted"])
def test_acks_all_when_leadership_goes(tmp_path, clock, change):
    replicas, part = hosted(tmp_path, write_caching=True)
    done = replicas.append("t", 0, batch(2), now=T0, acks=-1)

    def act():
        if change == "follower":
            part.become(info(epoch=5, leader=1), Role.FOLLOWER)
        elif change == "new epoch":
            part.become(info(epoch=5), Role.LEADER)
        else:
            replicas.remove("t", 0)
        part.log.set_high_watermark(2)  # whatever the high watermark says now

    expected = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if change == "deleted" else ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert committed(replicas, [done], 5000, act) == {done: expected}


def test_a_partition_alone_is_committed_at_once_and_fsynced(tmp_path):
    replicas = ReplicaManager(0, producer_expiration_ms=1)
    part = replicas.add("t", 0, PartitionLog(tmp_path / "t-0", LogConfig()), info(isr=(0,), replicas=(0,)))
    assert part.role is Role.LEADER and part.leader_state is None
    done = replicas.append("t", 0, batch(2), now=T0, acks=-1)
    assert part.high_watermark == 2
    assert committed(replicas, [done], 0) == {}
    assert part.log.recovery_point == 2


# -- long polls -------------------------------------------------------------------------------


def test_an_append_wakes_followers_and_a_moving_high_watermark_wakes_consumers(tmp_path, clock):
    """Consumers wait for the high watermark, followers for appends: an
    append the followers have not copied yet leaves consumers parked, and
    a high watermark that moves leaves followers parked (they learn it
    with their next records); waking both for everything was most of a
    replicated leader's CPU under load."""
    _replicas, part = hosted(tmp_path, info(isr=(0, 1), replicas=(0, 1)), write_caching=True)
    commit, data = trio.Event(), trio.Event()
    part.park(commit)
    part.park(data, appends=True)
    part.append_as_leader(batch(2), now=T0)
    assert part.high_watermark == 0
    assert data.is_set() and not commit.is_set()
    data = trio.Event()
    part.park(data, appends=True)
    part.follower_fetched(1, 2, T0)
    assert part.high_watermark == 2
    assert commit.is_set() and not data.is_set()


def test_an_append_that_also_moves_the_high_watermark_wakes_followers(tmp_path, clock):
    """Followers copy every append, whatever the high watermark does. Here
    the leader alone counts (write.caching, its follower out of the ISR
    and never caught up), so the append commits at once; the follower
    parked for appends used to miss it and wait out its long poll."""
    _replicas, part = hosted(tmp_path, info(isr=(0,), replicas=(0, 1)), write_caching=True)
    data = trio.Event()
    part.park(data, appends=True)
    part.append_as_leader(batch(2), now=T0)
    assert part.high_watermark == 2
    assert data.is_set()


def test_an_acks_all_waiter_wakes_when_the_high_watermark_reaches_its_offset(tmp_path, clock):
    _replicas, part = hosted(tmp_path, info(isr=(0, 1), replicas=(0, 1)), write_caching=True)
    part.append_as_leader(batch(3), now=T0)
    first, last = trio.Event(), trio.Event()
    part.park_until(first, 1)
    part.park_until(last, 3)
    part.follower_fetched(1, 2, T0)
    assert part.high_watermark == 2
    assert first.is_set() and not last.is_set()
    part.follower_fetched(1, 3, T0)
    assert last.is_set()
    done = trio.Event()
    part.park_until(done, 3)  # already covered
    assert done.is_set()


def test_a_role_change_wakes_every_waiter(tmp_path, clock):
    _replicas, part = hosted(tmp_path)
    commit, data, acked = trio.Event(), trio.Event(), trio.Event()
    part.park(commit)
    part.park(data, appends=True)
    part.park_until(acked, 10)
    part.become(info(epoch=5, leader=1), Role.FOLLOWER)
    assert commit.is_set() and data.is_set() and acked.is_set()
