"""A partition log with transactions: markers end them, aborts go into the
segment's .txnindex with the last stable offset of the moment, the log's
last stable offset holds read_committed readers back, and all of it
survives a restart, a crash that loses the index, a truncation and the
deletion of the segment."""

from __future__ import annotations

import pytest

from pybroker.protocol.record_batch import RecordBatch
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog
from pybroker.storage.producer_state import CoordinatorFenced
from pybroker.storage.txn_index import AbortedTxn

from .txn_batches import marker, txn_batch


def data(pid, seq, n, base):
    return txn_batch(pid, [b"v"] * n, base, seq)


def open_log(tmp_path, **kw):
    return PartitionLog(tmp_path / "t-0", LogConfig(), **kw)


def fill(plog):
    """Producer 1 aborts 0-1 (marker 3), producer 2 commits 2 (marker 4),
    producer 3 opens a transaction at 5."""
    plog.append_as_follower(data(1, 0, 2, 0))
    plog.append_as_follower(data(2, 0, 1, 2))
    plog.append_as_follower(marker(1, False, 3))
    plog.append_as_follower(marker(2, True, 4))
    plog.append_as_follower(data(3, 0, 1, 5))


def test_markers_end_transactions_and_aborts_are_indexed(tmp_path):
    plog = open_log(tmp_path)
    plog.append_as_follower(data(1, 0, 2, 0))
    plog.append_as_follower(data(2, 0, 1, 2))
    plog.set_high_watermark(3)
    assert plog.last_stable_offset == 0  # producer 1's transaction is open
    plog.append_as_follower(marker(1, False, 3))
    # Producer 2 still holds the log back when producer 1's abort is written.
    assert plog.active.txn_index.entries == [AbortedTxn(1, 0, 3, 2)]
    plog.set_high_watermark(4)
    assert plog.last_stable_offset == 2
    plog.append_as_follower(marker(2, True, 4))
    assert len(plog.active.txn_index) == 1  # a commit is not indexed
    plog.set_high_watermark(4)
    assert plog.last_stable_offset == 2  # its marker is not committed yet
    plog.set_high_watermark(5)
    assert plog.last_stable_offset == 5
    plog.close()


def _state(plog):
    return plog.active.txn_index.entries, dict(plog.producers.ongoing), plog.producers.entries[1].coordinator_epoch


@pytest.mark.parametrize("snapshot", [True, False])
def test_a_clean_restart_keeps_the_index_and_the_open_transactions(tmp_path, snapshot):
    plog = open_log(tmp_path)
    fill(plog)
    if snapshot:
        plog.take_producer_snapshot()
    before = _state(plog)
    plog.flush()
    plog.close()
    again = open_log(tmp_path, high_watermark=6)
    assert _state(again) == before
    assert again.last_stable_offset == 5
    again.close()


def test_a_crash_that_lost_the_index_rebuilds_it(tmp_path):
    plog = open_log(tmp_path)
    plog.append_as_follower(data(9, 0, 1, 0))
    plog.roll()
    plog.take_producer_snapshot()  # at 1: before the segment recovery will empty
    fill_base = plog.log_end_offset
    plog.append_as_follower(data(1, 0, 2, fill_base))
    plog.append_as_follower(marker(1, False, fill_base + 2))
    before = plog.active.txn_index.entries
    assert before == [AbortedTxn(1, fill_base, fill_base + 2, 0)]  # producer 9 still open at 0
    plog.take_producer_snapshot()  # after the abort: no use for rebuilding its index
    plog.flush()
    plog.close()
    index = tmp_path / "t-0" / f"{fill_base:020d}.txnindex"
    index.unlink()
    crashed = open_log(tmp_path, recovery_point=fill_base, clean=False)
    assert crashed.active.txn_index.entries == before
    assert index.exists()
    crashed.close()


def test_a_torn_index_entry_makes_a_clean_open_recover_the_segment(tmp_path):
    plog = open_log(tmp_path)
    fill(plog)
    plog.flush()
    plog.close()
    index = tmp_path / "t-0" / f"{0:020d}.txnindex"
    with open(index, "ab") as f:
        f.write(b"\x00" * 7)
    again = open_log(tmp_path)
    assert again.active.txn_index.entries == [AbortedTxn(1, 0, 3, 2)]
    assert index.stat().st_size == 34
    again.close()


def test_truncating_below_an_abort_reopens_its_transaction(tmp_path):
    plog = open_log(tmp_path)
    fill(plog)
    plog.truncate_to(3)
    assert plog.active.txn_index.entries == []
    assert dict(plog.producers.ongoing) == {1: 0, 2: 2}
    plog.set_high_watermark(3)
    assert plog.last_stable_offset == 0
    plog.close()


def test_a_deleted_segment_takes_its_index_along(tmp_path):
    plog = open_log(tmp_path)
    fill(plog)
    plog.roll()
    plog.set_high_watermark(plog.log_end_offset)
    index = tmp_path / "t-0" / f"{0:020d}.txnindex"
    assert index.exists()
    plog.delete_records(6)  # deletes the segments below the new start
    assert [s.base_offset for s in plog.segments] == [6]
    assert not index.exists()
    plog.close()


def test_a_leader_refuses_a_marker_of_an_older_coordinator(tmp_path):
    plog = open_log(tmp_path)
    plog.append_as_follower(data(1, 0, 1, 0))
    plog.append_as_leader([RecordBatch(bytearray(marker(1, True, 0, coordinator_epoch=5)))], leader_epoch=0)
    plog.append_as_leader([RecordBatch(bytearray(data(1, 1, 1, 0)))], leader_epoch=0)
    end = plog.log_end_offset
    with pytest.raises(CoordinatorFenced):
        plog.append_as_leader([RecordBatch(bytearray(marker(1, False, 0, coordinator_epoch=4)))], leader_epoch=0)
    assert plog.log_end_offset == end and plog.producers.ongoing == {1: 2}
    plog.close()
