"""Idempotent-producer state: the sequence rules, and its survival across
restarts through snapshot files plus replay of the log."""

import pytest

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.config import BrokerConfig
from pybroker.producers import BatchMeta, DuplicateBatch, PartitionProducers, SequenceError
from pybroker.storage.producer_snapshot import list_snapshots


def meta(first, last, base):
    return BatchMeta(first, last, base, base + last - first, 0)


def test_sequence_rules():
    s = PartitionProducers()
    s.check(7, 0, 0, 4)  # unknown producer: anything goes
    s.update(7, 0, meta(0, 4, 100), 0)
    with pytest.raises(DuplicateBatch) as dup:
        s.check(7, 0, 0, 4)
    assert dup.value.meta.base_offset == 100
    with pytest.raises(SequenceError) as gap:
        s.check(7, 0, 6, 8)
    assert gap.value.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    s.check(7, 0, 5, 9)
    with pytest.raises(SequenceError) as fenced:
        s.check(7, -1, 5, 9)
    assert fenced.value.code == ErrorCode.INVALID_PRODUCER_EPOCH
    with pytest.raises(SequenceError) as new_epoch:
        s.check(7, 1, 3, 4)
    assert new_epoch.value.code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    s.check(7, 1, 0, 0)


def test_only_the_last_five_batches_are_remembered():
    s = PartitionProducers()
    for i in range(6):
        s.update(1, 0, meta(i, i, i), 0)
    with pytest.raises(DuplicateBatch):
        s.check(1, 0, 1, 1)
    with pytest.raises(SequenceError):
        s.check(1, 0, 0, 0)  # fell out of the window: no longer a known duplicate


def test_sequence_wraps_at_int32_max():
    s = PartitionProducers()
    s.update(1, 0, meta(2**31 - 3, 2**31 - 1, 0), 0)
    s.check(1, 0, 0, 5)


def _broker(tmp_path):
    from pybroker.broker import Broker

    return Broker(BrokerConfig({"log.dirs": str(tmp_path), "listeners": "PLAINTEXT://127.0.0.1:0"}))


def _append(broker, topic, pid, epoch, seq, n):
    part = broker.partition(topic, 0)
    batch = bytearray(
        build_batch([NewRecord(value=b"v")] * n, producer_id=pid, producer_epoch=epoch, base_sequence=seq)
    )
    result = part.append(batch, 0)
    state = broker.producers.for_partition(topic, 0)
    state.update(pid, epoch, BatchMeta(seq, seq + n - 1, result.base_offset, result.last_offset, 0), 0)
    return result


@pytest.mark.parametrize("snapshot", [True, False])
def test_state_survives_a_restart(tmp_path, snapshot):
    broker = _broker(tmp_path)
    broker.create_topic("t", 1)
    _append(broker, "t", 42, 0, 0, 3)
    _append(broker, "t", 42, 0, 3, 2)
    _append(broker, "t", 43, 5, 10, 1)
    if snapshot:
        broker.producers.snapshot_all()
        assert list_snapshots(broker.partition("t", 0).log.directory) == [6]
    broker.logs.close()

    again = _broker(tmp_path)
    state = again.producers.for_partition("t", 0)
    with pytest.raises(DuplicateBatch) as dup:
        state.check(42, 0, 3, 4)
    assert dup.value.meta.base_offset == 3
    with pytest.raises(SequenceError):
        state.check(42, 0, 9, 9)
    state.check(42, 0, 5, 5)
    with pytest.raises(DuplicateBatch):
        state.check(43, 5, 10, 10)
    again.logs.close()


def test_snapshot_beyond_the_log_end_is_ignored(tmp_path):
    broker = _broker(tmp_path)
    broker.create_topic("t", 1)
    _append(broker, "t", 1, 0, 0, 2)
    broker.producers.snapshot_all()
    plog = broker.partition("t", 0).log
    plog.truncate_to(0)  # as after a crash that lost the tail
    broker.logs.close()
    again = _broker(tmp_path)
    assert list_snapshots(again.partition("t", 0).log.directory) == []
    again.producers.for_partition("t", 0).check(1, 0, 7, 7)  # state forgotten with the data
    again.logs.close()


def test_only_the_newest_snapshots_are_kept(tmp_path):
    broker = _broker(tmp_path)
    broker.create_topic("t", 1)
    directory = broker.partition("t", 0).log.directory
    for n in range(4):
        _append(broker, "t", 7, 0, n, 1)
        broker.producers.snapshot_all()
    assert list_snapshots(directory) == [3, 4]
    broker.producers.snapshot_all()  # nothing new: no new file
    assert list_snapshots(directory) == [3, 4]
    broker.logs.close()
    again = _broker(tmp_path)
    with pytest.raises(DuplicateBatch):
        again.producers.for_partition("t", 0).check(7, 0, 3, 3)
    again.logs.close()
