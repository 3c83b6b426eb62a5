"""Transactions in a partition's producer state (Kafka's ProducerStateManager):
a transactional batch opens its producer's transaction, a marker ends it;
the first unstable offset is the earliest open transaction or ended one
whose marker the high watermark has not passed; markers from an older
coordinator are fenced; snapshots and a replay of the log restore it all."""

from __future__ import annotations

import pytest

from pybroker.protocol.record_batch import RecordBatch
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog
from pybroker.storage.producer_state import (
    BatchMeta,
    CompletedTxn,
    CoordinatorFenced,
    ProducerFenced,
    ProducerStateManager,
)

from .txn_batches import marker, txn_batch


def batch(pid, epoch, seq, n, base_offset):
    return RecordBatch(bytearray(txn_batch(pid, [b"v"] * n, base_offset, seq, epoch)))


def test_a_transaction_is_open_from_its_first_batch_to_its_marker():
    s = ProducerStateManager()
    assert s.first_unstable_offset() is None
    s.appended(batch(1, 0, 0, 2, 10), 0)  # 10-11
    s.appended(batch(1, 0, 2, 1, 14), 0)  # 14: same transaction
    assert s.ongoing == {1: 10} and s.first_unstable_offset() == 10
    txn, lso = s.complete(1, 0, False, 3, 15, 1000)
    assert txn == CompletedTxn(1, 10, 15, True)
    assert lso == 16  # nothing else open: stable right after the marker
    assert s.ongoing == {} and s.entries[1].coordinator_epoch == 3
    assert s.first_unstable_offset() == 10  # until the high watermark passes the marker
    s.on_high_watermark(15)
    assert s.first_unstable_offset() == 10
    s.on_high_watermark(16)
    assert s.first_unstable_offset() is None


def test_interleaved_transactions_keep_the_earliest_first_offset():
    s = ProducerStateManager()
    s.appended(batch(1, 0, 0, 1, 0), 0)
    s.appended(batch(2, 0, 0, 1, 1), 0)
    s.appended(batch(3, 0, 0, 1, 2), 0)
    txn, lso = s.complete(2, 0, False, 0, 3, 0)  # the middle one aborts
    assert txn.first_offset == 1 and lso == 0  # producer 1 still holds the log back
    s.on_high_watermark(4)
    assert s.first_unstable_offset() == 0
    s.complete(1, 0, True, 0, 4, 0)
    s.on_high_watermark(5)
    assert s.first_unstable_offset() == 2  # producer 3's
    assert list(s.ongoing) == [3]


def test_a_marker_with_no_open_transaction_ends_an_empty_one():
    s = ProducerStateManager()
    txn, lso = s.complete(9, 0, False, 0, 50, 0)
    assert txn == CompletedTxn(9, 50, 50, True) and lso == 51


def test_markers_of_an_older_coordinator_or_producer_epoch_are_fenced():
    s = ProducerStateManager()
    s.appended(batch(1, 5, 0, 1, 0), 0)
    s.complete(1, 5, True, 7, 1, 0)
    s.check_marker(1, 5, 7)
    s.check_marker(1, 6, 8)
    with pytest.raises(CoordinatorFenced) as exc:
        s.check_marker(1, 5, 6)
    assert exc.value.error == "TRANSACTION_COORDINATOR_FENCED"
    with pytest.raises(ProducerFenced):
        s.check_marker(1, 4, 7)
    s.check_marker(2, 0, 0)  # an unknown producer: nothing to fence against


def test_an_abort_that_bumps_the_epoch_restarts_the_sequences():
    s = ProducerStateManager()
    s.appended(batch(1, 0, 0, 3, 0), 0)
    s.complete(1, 1, False, 0, 3, 0)  # the coordinator fenced epoch 0 (a timeout)
    assert s.entries[1].epoch == 1 and not s.entries[1].batches
    with pytest.raises(ProducerFenced):
        s.check(1, 0, 3, 3)
    with pytest.raises(Exception) as exc:
        s.check(1, 1, 3, 3)
    assert exc.value.error == "OUT_OF_ORDER_SEQUENCE_NUMBER"
    assert s.check(1, 1, 0, 0) is None


def test_a_new_epoch_keeps_the_open_transaction():
    s = ProducerStateManager()
    s.appended(batch(1, 0, 0, 1, 0), 0)
    s.update(1, 1, BatchMeta(0, 0, 1, 1, 0), 0)
    assert s.entries[1].current_txn_first_offset == 0 and s.first_unstable_offset() == 0


def test_snapshots_keep_open_transactions_and_marker_only_entries():
    s = ProducerStateManager()
    s.appended(batch(2, 0, 0, 1, 5), 0)
    s.appended(batch(1, 0, 0, 1, 7), 0)
    s.complete(3, 4, False, 9, 8, 123)  # only a marker seen from producer 3
    again = ProducerStateManager()
    again.load_snapshot(list(reversed(s.to_snapshot())))
    assert list(again.ongoing.items()) == [(2, 5), (1, 7)]  # in offset order
    assert again.first_unstable_offset() == 5
    three = again.entries[3]
    assert (three.epoch, three.coordinator_epoch, three.last_seen_ms, len(three.batches)) == (4, 9, 123, 0)
    assert set(again.to_snapshot()) == set(s.to_snapshot())


def test_a_replay_of_the_log_reopens_and_ends_transactions(tmp_path):
    plog = PartitionLog(tmp_path / "t-0", LogConfig())
    plog.append_as_follower(txn_batch(1, [b"a", b"a"], 0))
    plog.append_as_follower(txn_batch(2, [b"b"], 2))
    plog.append_as_follower(marker(1, False, 3, coordinator_epoch=4))
    plog.append_as_follower(txn_batch(1, [b"c"], 4, seq=2))
    aborted = []
    s = ProducerStateManager()
    s.replay(plog, 0, lambda seg, txn, lso: aborted.append((seg.base_offset, txn, lso)))
    assert aborted == [(0, CompletedTxn(1, 0, 3, True), 2)]
    assert list(s.ongoing.items()) == [(2, 2), (1, 4)]
    assert s.entries[1].coordinator_epoch == 4
    plog.close()


def test_a_coordinators_batch_without_sequence_is_checked_for_its_epoch_only():
    """TxnOffsetCommit batches carry the producer's id and epoch but no
    sequence, also right after the producer's epoch was bumped."""
    s = ProducerStateManager()
    s.appended(batch(1, 0, 0, 2, 10), 0)
    assert s.check(1, 0, -1, -1) is None
    s.appended(batch(1, 0, -1, 1, 12), 0)
    assert s.check(1, 0, -1, -1) is None  # not taken for a duplicate of the last one
    assert s.check(1, 1, -1, -1) is None  # a new epoch: accepted without sequence 0
    s.appended(batch(1, 1, -1, 1, 13), 0)
    with pytest.raises(ProducerFenced):
        s.check(1, 0, -1, -1)
