"""Idempotent-producer state: the sequence rules, its upkeep by every
append to the log (leader, follower, truncation), and its survival across
restarts through snapshot files plus replay of the log."""

import pytest

from pybroker.config import BrokerConfig
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.record_batch import RecordBatch
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog
from pybroker.storage.producer_snapshot import list_snapshots
from pybroker.storage.producer_state import BatchMeta, ProducerStateError, ProducerStateManager


def meta(first, last, base):
    return BatchMeta(first, last, base, base + last - first, 0)


def refused(fn, *args) -> ErrorCode:
    """The Kafka error a refused append is answered with (storage names it)."""
    with pytest.raises(ProducerStateError) as exc:
        fn(*args)
    return ErrorCode[exc.value.error]


def test_sequence_rules():
    s = ProducerStateManager()
    assert s.check(7, 0, 0, 4) is None  # unknown producer: anything goes
    s.update(7, 0, meta(0, 4, 100), 0)
    assert s.check(7, 0, 0, 4).base_offset == 100  # a duplicate: its original offsets
    assert refused(s.check, 7, 0, 6, 8) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert s.check(7, 0, 5, 9) is None
    assert refused(s.check, 7, -1, 5, 9) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert refused(s.check, 7, 1, 3, 4) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert s.check(7, 1, 0, 0) is None


def test_only_the_last_five_batches_are_remembered():
    s = ProducerStateManager()
    for i in range(6):
        s.update(1, 0, meta(i, i, i), 0)
    assert s.check(1, 0, 1, 1) is not None
    assert refused(s.check, 1, 0, 0, 0) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER  # out of the window


def test_sequence_wraps_at_int32_max():
    s = ProducerStateManager()
    s.update(1, 0, meta(2**31 - 3, 2**31 - 1, 0), 0)
    assert s.check(1, 0, 0, 5) is None


def test_an_entry_has_room_for_its_open_transaction():
    s = ProducerStateManager()
    s.update(1, 0, meta(0, 0, 0), 0)
    s.update(2, 0, meta(0, 0, 1), 0)
    assert s.entries[1].current_txn_first_offset is None
    s.entries[2].current_txn_first_offset = 1  # as a transaction will set it
    assert s.expire(older_than_ms=10) == 1  # an open transaction keeps its producer
    assert list(s.entries) == [2]


# -- the log keeps it --------------------------------------------------------------


def raw(pid, epoch, seq, n, base_offset=0, leader_epoch=-1):
    return bytearray(
        build_batch(
            [NewRecord(value=b"v")] * n,
            producer_id=pid,
            producer_epoch=epoch,
            base_sequence=seq,
            base_offset=base_offset,
            partition_leader_epoch=leader_epoch,
        )
    )


def lead(plog, pid, epoch, seq, n):
    return plog.append_as_leader([RecordBatch(raw(pid, epoch, seq, n))], leader_epoch=0, now=0)


def open_log(tmp_path, **kw):
    return PartitionLog(tmp_path / "t-0", LogConfig(), **kw)


def test_a_leader_append_is_checked_and_recorded(tmp_path):
    plog = open_log(tmp_path)
    assert lead(plog, 42, 0, 0, 3).base_offset == 0
    assert lead(plog, 42, 0, 3, 2).base_offset == 3
    retry = lead(plog, 42, 0, 0, 3)
    assert (retry.base_offset, retry.last_offset, retry.duplicate) == (0, 2, True)
    assert plog.log_end_offset == 5  # not written again
    assert refused(lead, plog, 42, 0, 9, 1) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert refused(lead, plog, 42, -1, 5, 1) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert plog.log_end_offset == 5  # nothing written for a refusal
    assert plog.producers.last_offsets() == {42: 4}
    plog.close()


def test_a_follower_append_updates_the_state_unchecked(tmp_path):
    plog = open_log(tmp_path)
    # The leader's batches, offsets and epochs assigned there; a sequence
    # gap is the leader's business, not the follower's.
    result = plog.append_as_follower(
        raw(7, 0, 0, 2, base_offset=0, leader_epoch=3) + raw(7, 0, 5, 1, base_offset=2, leader_epoch=3)
    )
    assert (result.base_offset, result.last_offset) == (0, 2)
    assert plog.epochs.latest_epoch == 3
    assert plog.producers.entries[7].last_seq == 5
    # Were it to become leader, the retry of the last batch is recognised.
    assert lead(plog, 7, 0, 5, 1).duplicate
    assert lead(plog, 7, 0, 6, 1).base_offset == 3
    plog.close()


def test_truncation_rebuilds_the_state_from_the_log(tmp_path):
    plog = open_log(tmp_path)
    lead(plog, 1, 0, 0, 2)  # offsets 0-1
    plog.take_producer_snapshot()  # at 2
    lead(plog, 1, 0, 2, 2)  # 2-3
    lead(plog, 2, 0, 0, 1)  # 4
    plog.take_producer_snapshot()  # at 5: beyond the truncation, so dropped
    plog.truncate_to(3)  # the batch at 2-3 goes (whole batches: the segment cuts at 2)
    assert plog.log_end_offset == 2
    assert list_snapshots(plog.directory) == [2]
    assert set(plog.producers.entries) == {1}
    assert plog.producers.entries[1].last_seq == 1
    assert lead(plog, 1, 0, 2, 1).base_offset == 2  # the producer resends from sequence 2
    plog.truncate_fully(100)
    assert plog.producers.entries == {} and list_snapshots(plog.directory) == []
    plog.close()


@pytest.mark.parametrize("snapshot", [True, False])
def test_recovery_loads_the_newest_snapshot_and_replays_the_rest(tmp_path, snapshot):
    plog = open_log(tmp_path)
    lead(plog, 42, 0, 0, 3)
    if snapshot:
        plog.take_producer_snapshot()
        assert list_snapshots(plog.directory) == [3]
    lead(plog, 42, 0, 3, 2)  # replayed from the log after the snapshot
    lead(plog, 43, 5, 10, 1)
    plog.close()
    again = open_log(tmp_path)
    state = again.producers
    assert state.check(42, 0, 3, 4).base_offset == 3
    assert refused(state.check, 42, 0, 9, 9) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert state.check(42, 0, 5, 5) is None
    assert state.check(43, 5, 10, 10) is not None
    again.close()


def test_a_corrupt_snapshot_falls_back_to_an_older_one(tmp_path):
    plog = open_log(tmp_path)
    lead(plog, 1, 0, 0, 1)
    plog.take_producer_snapshot()  # at 1
    lead(plog, 1, 0, 1, 1)
    plog.take_producer_snapshot()  # at 2
    plog.close()
    (tmp_path / "t-0" / f"{2:020d}.snapshot").write_bytes(b"garbage")
    again = open_log(tmp_path)
    assert list_snapshots(again.directory) == [1]
    assert again.producers.entries[1].last_seq == 1  # snapshot at 1, then the batch at 1 replayed
    again.close()


# -- through the broker ----------------------------------------------------------


def _broker(tmp_path):
    from pybroker.broker import Broker

    return Broker(BrokerConfig({"log.dirs": str(tmp_path), "listeners": "PLAINTEXT://127.0.0.1:0"}))


def _append(broker, topic, pid, epoch, seq, n):
    from pybroker.protocol.record_batch import RecordBatch

    return broker.replicas.append(topic, 0, RecordBatch(raw(pid, epoch, seq, n)), now=0, acks=1)


@pytest.mark.parametrize("snapshot", [True, False])
def test_state_survives_a_restart(tmp_path, snapshot):
    broker = _broker(tmp_path)
    broker.topics.create_topic("t", 1)
    _append(broker, "t", 42, 0, 0, 3)
    _append(broker, "t", 42, 0, 3, 2)
    _append(broker, "t", 43, 5, 10, 1)
    if snapshot:
        broker.replicas.snapshot_producers()
        assert list_snapshots(broker.replicas.partition("t", 0).log.directory) == [6]
    broker.logs.close()

    again = _broker(tmp_path)
    retry = _append(again, "t", 42, 0, 3, 2)
    assert (retry.duplicate, retry.base_offset) == (True, 3)
    with pytest.raises(KafkaError):
        _append(again, "t", 42, 0, 9, 1)
    assert _append(again, "t", 42, 0, 5, 1).base_offset == 6
    assert _append(again, "t", 43, 5, 10, 1).duplicate
    again.logs.close()


def test_snapshot_beyond_the_log_end_is_ignored(tmp_path):
    broker = _broker(tmp_path)
    broker.topics.create_topic("t", 1)
    _append(broker, "t", 1, 0, 0, 2)
    broker.replicas.snapshot_producers()
    plog = broker.replicas.partition("t", 0).log
    plog.truncate_to(0)  # as after a crash that lost the tail
    broker.logs.close()
    again = _broker(tmp_path)
    assert list_snapshots(again.replicas.partition("t", 0).log.directory) == []
    assert _append(again, "t", 1, 0, 7, 1).base_offset == 0  # state forgotten with the data
    again.logs.close()


def test_only_the_newest_snapshots_are_kept(tmp_path):
    broker = _broker(tmp_path)
    broker.topics.create_topic("t", 1)
    directory = broker.replicas.partition("t", 0).log.directory
    for n in range(4):
        _append(broker, "t", 7, 0, n, 1)
        broker.replicas.snapshot_producers()
    assert list_snapshots(directory) == [3, 4]
    broker.replicas.snapshot_producers()  # nothing new: no new file
    assert list_snapshots(directory) == [3, 4]
    broker.logs.close()
    again = _broker(tmp_path)
    assert _append(again, "t", 7, 0, 3, 1).duplicate
    again.logs.close()


def test_idle_producers_expire(tmp_path):
    broker = _broker(tmp_path)
    broker.topics.create_topic("t", 1)
    _append(broker, "t", 7, 0, 0, 1)  # last seen at 0
    expiration = broker.config["producer.id.expiration.ms"]
    assert broker.replicas.expire_producers(now_ms=expiration) == 0
    assert broker.replicas.expire_producers(now_ms=expiration + 1) == 1
    assert _append(broker, "t", 7, 0, 5, 1).base_offset == 1  # unknown again: any sequence
    broker.logs.close()
