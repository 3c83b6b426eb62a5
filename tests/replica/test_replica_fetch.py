"""replica_fetch.py: the leader's answer to one partition of a follower's
Fetch, in Kafka's order of checks, and when it records the follower's
position."""

from __future__ import annotations

from typing import ClassVar

import pytest

from pybroker.cluster.model import PartitionInfo, PartitionState
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.record_batch import split_batches
from pybroker.replica import Partition, ReplicaManager, Role
from pybroker.replica.replica_fetch import idle_token, read_for_follower, refetch_idle
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog

from .replication_harness import message_batch

EPOCH = 3
FOLLOWER = 2


class Recording(Partition):
    """A Partition that notes each follower_fetched call."""

    __slots__ = ()
    calls: ClassVar[list] = []

    def follower_fetched(self, replica_id, fetch_offset, now_ms):
        Recording.calls.append((replica_id, fetch_offset, now_ms))
        super().follower_fetched(replica_id, fetch_offset, now_ms)


@pytest.fixture
def leader(tmp_path):
    replicas = ReplicaManager(1, producer_expiration_ms=86_400_000)
    info = PartitionInfo(0, [1, 2, 3], PartitionState(1, EPOCH, [1, 2, 3]))
    part = replicas.add("t", 0, PartitionLog(tmp_path / "t-0", LogConfig()), info)
    part.become(info, Role.LEADER)
    part.__class__ = Recording
    Recording.calls = []
    for _ in range(4):
        part.append_as_leader(message_batch(b"v"), now=0)
    yield part
    part.log.close()


def read(part, offset=4, current=EPOCH, last=EPOCH, replica=FOLLOWER, max_bytes=1 << 20, record=True):
    return read_for_follower(part, replica, offset, current, last, max_bytes, True, False, 123, record)


def test_records_up_to_the_log_end_and_the_position_recorded(leader):
    leader.log.set_high_watermark(1)  # followers have not copied yet
    got = read(leader, offset=1, last=EPOCH)
    assert got.error == ErrorCode.NONE and got.diverging is None
    batches, rest = split_batches(got.records)
    assert rest == 0 and [b.base_offset for b in batches] == [1, 2, 3]
    assert Recording.calls == [(FOLLOWER, 1, 123)]


def test_a_long_polls_later_reads_record_nothing(leader):
    read(leader, record=False)
    assert Recording.calls == []


@pytest.mark.parametrize(
    ("current", "code"),
    [(EPOCH - 1, ErrorCode.FENCED_LEADER_EPOCH), (EPOCH + 1, ErrorCode.UNKNOWN_LEADER_EPOCH)],
)
def test_the_current_leader_epoch_is_checked_first(leader, current, code):
    leader.become(leader.info, Role.FOLLOWER)  # the epoch check comes before leadership
    assert read(leader, current=current).error == code
    assert Recording.calls == []


def test_a_follower_is_not_asked(leader):
    leader.become(leader.info, Role.FOLLOWER)
    got = read(leader)
    assert (got.error, got.high_watermark, got.records) == (ErrorCode.NOT_LEADER_OR_FOLLOWER, -1, b"")


def test_a_broker_that_is_no_replica(leader):
    assert read(leader, replica=9).error == ErrorCode.UNKNOWN_LEADER_EPOCH
    assert read(leader, replica=9, current=-1).error == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert Recording.calls == []


def test_offsets_out_of_range(leader):
    # Past the log end in the leader's epoch is a divergence (below); with
    # no epoch to check, the range.
    assert read(leader, offset=5, last=-1).error == ErrorCode.OFFSET_OUT_OF_RANGE
    leader.log.set_high_watermark(4)
    leader.delete_records(2)
    assert read(leader, offset=1).error == ErrorCode.OFFSET_OUT_OF_RANGE
    # An epoch the leader cannot place: newer than its own.
    assert read(leader, last=EPOCH + 1).error == ErrorCode.OFFSET_OUT_OF_RANGE
    assert Recording.calls == []


def test_at_the_log_end_nothing_but_the_position(leader):
    got = read(leader, offset=4)
    assert (got.error, len(got.records)) == (ErrorCode.NONE, 0)
    assert Recording.calls == [(FOLLOWER, 4, 123)]


def test_divergence_answers_the_epoch_and_its_end_without_records(leader):
    # The follower's last batch is of epoch 2, below every epoch here: an
    # epoch below them all ends where the first one (3) begins.
    got = read(leader, offset=4, last=2)
    assert got.diverging == (2, 0) and got.records == b"" and got.error == ErrorCode.NONE
    assert Recording.calls == []


def test_a_follower_ahead_in_the_leaders_epoch_diverges(leader):
    leader.become(PartitionInfo(0, [1, 2, 3], PartitionState(1, EPOCH + 1, [1, 2, 3])), Role.LEADER)
    # The follower holds epoch-3 records up to 6; this leader ended epoch 3 at 4.
    got = read(leader, offset=6, current=EPOCH + 1, last=EPOCH)
    assert got.diverging == (EPOCH, 4)
    # Behind it is fine.
    assert read(leader, offset=2, current=EPOCH + 1, last=EPOCH).diverging is None
    # Past the log end in the leader's current epoch, which runs to the log
    # end: diverging there.
    assert read(leader, offset=5, current=EPOCH + 1, last=EPOCH + 1).diverging == (EPOCH + 1, 4)


def test_an_offline_log_is_a_storage_error(leader):
    leader.log.offline = "disk gone"
    with pytest.raises(KafkaError) as exc:
        read(leader)
    assert exc.value.code == ErrorCode.KAFKA_STORAGE_ERROR


# -- idle partitions of a follower's fetch session ---------------------------------------


def committed_to_the_end(part) -> int:
    """Both followers hold the whole log and it is all committed; returns
    the time of their fetches (after the caught-up time leadership began with)."""
    now = max(f.last_caught_up_ms for f in part.leader_state.followers.values()) + 1
    for replica in (2, 3):
        part.follower_fetched(replica, 4, now)
    part.log.set_high_watermark(4)
    return now


def test_an_idle_partition_is_refetched_as_its_follower_fetching_again(leader):
    t = committed_to_the_end(leader)
    token = idle_token(leader, FOLLOWER, 4)
    assert token is not None
    follower = leader.leader_state.followers[FOLLOWER]
    assert refetch_idle(leader, token, t + 100, record=True)
    assert (follower.leo, follower.last_fetch_ms, follower.last_caught_up_ms) == (4, t + 100, t + 100)
    assert refetch_idle(leader, token, t + 200, record=False)  # a long poll's later look records nothing
    assert follower.last_fetch_ms == t + 100


def test_a_follower_idle_longer_than_the_lag_limit_is_not_dropped_when_records_come(leader):
    """Its caught-up time must keep moving while it refetches the idle
    partition: an idle time counted as lag would shrink the ISR as soon as
    the leader appends."""
    t = committed_to_the_end(leader)
    token = idle_token(leader, FOLLOWER, 4)
    assert refetch_idle(leader, token, t + 60_000, record=True)
    leader.append_as_leader(message_batch(b"v"), now=t + 60_001)
    leader.follower_fetched(FOLLOWER, 4, t + 60_002)  # behind by the new record
    assert leader.leader_state.out_of_sync(t + 60_010, leader.log.log_end_offset, 30_000) == [3]


def _new_state(part):
    part.info = PartitionInfo(0, [1, 2, 3], PartitionState(1, EPOCH, [1, 2, 3], version=1))


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p.append_as_leader(message_batch(b"v"), now=0),
        lambda p: p.log.set_high_watermark(3),
        _new_state,
        lambda p: p.become(PartitionInfo(0, [1, 2, 3], PartitionState(1, EPOCH + 1, [1, 2, 3])), Role.LEADER),
        lambda p: p.become(p.info, Role.FOLLOWER),
        lambda p: setattr(p.log, "offline", "disk gone"),
    ],
    ids=["an append", "the high watermark", "a new partition state", "a new leader epoch", "leadership lost",
         "the log offline"],
)
def test_anything_that_changes_the_answer_ends_the_idle_refetch(leader, change):
    t = committed_to_the_end(leader)
    token = idle_token(leader, FOLLOWER, 4)
    change(leader)
    assert not refetch_idle(leader, token, t + 100, record=True)


def test_no_idle_refetch_for_a_follower_behind_or_an_uncommitted_end(leader):
    t = committed_to_the_end(leader)
    assert idle_token(leader, FOLLOWER, 3) is None  # behind the log end
    leader.append_as_leader(message_batch(b"v"), now=t)
    leader.follower_fetched(FOLLOWER, 5, t + 1)
    assert idle_token(leader, FOLLOWER, 5) is None  # the high watermark is below the log end
