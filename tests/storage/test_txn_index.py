"""The aborted-transaction index: Kafka's 34-byte entries, appends in marker
order, truncation, the read_committed search and its early stop, and a
torn or foreign file reported for a rebuild."""

from __future__ import annotations

import struct

import pytest

from pybroker.storage.index import CorruptIndexError
from pybroker.storage.txn_index import ENTRY_SIZE, AbortedTxn, TransactionIndex


def test_entries_are_kafkas_34_bytes(tmp_path):
    path = tmp_path / "00000000000000000100.txnindex"
    idx = TransactionIndex(path, 100)
    assert not path.exists()  # created by the first entry, as Kafka does
    idx.append(AbortedTxn(7, 100, 120, 100))
    idx.append(AbortedTxn(9, 105, 130, 121))
    data = path.read_bytes()
    assert ENTRY_SIZE == 34 and len(data) == 68
    assert struct.unpack(">hqqqq", data[:34]) == (0, 7, 100, 120, 100)
    assert struct.unpack(">hqqqq", data[34:]) == (0, 9, 105, 130, 121)
    again = TransactionIndex(path, 100)
    again.sanity_check()
    assert again.entries == [AbortedTxn(7, 100, 120, 100), AbortedTxn(9, 105, 130, 121)]


def test_markers_must_come_in_order(tmp_path):
    idx = TransactionIndex(tmp_path / "0.txnindex", 0)
    idx.append(AbortedTxn(1, 0, 10, 0))
    with pytest.raises(ValueError):
        idx.append(AbortedTxn(2, 3, 10, 0))
    assert len(idx) == 1


def test_truncation_drops_the_aborts_at_or_after_the_offset(tmp_path):
    path = tmp_path / "0.txnindex"
    idx = TransactionIndex(path, 0)
    for i, last in enumerate((10, 20, 30)):
        idx.append(AbortedTxn(i, last - 5, last, last - 5))
    idx.truncate_to(20)
    assert [t.last_offset for t in idx.entries] == [10]
    assert [t.last_offset for t in TransactionIndex(path, 0).entries] == [10]
    idx.truncate_to(0)
    assert not path.exists() and len(idx) == 0


def test_collect_finds_the_overlapping_aborts_and_stops_at_the_lso(tmp_path):
    idx = TransactionIndex(tmp_path / "0.txnindex", 0)
    idx.append(AbortedTxn(1, 0, 5, 0))  # before the range
    idx.append(AbortedTxn(2, 8, 15, 6))  # overlaps its start
    idx.append(AbortedTxn(3, 20, 25, 16))  # inside
    idx.append(AbortedTxn(4, 40, 45, 26))  # starts after the range
    found = idx.collect(10, 30)
    assert [t.producer_id for t in found.aborted] == [2, 3]
    assert not found.complete  # no entry's LSO reached 30: later segments may hold more
    idx.append(AbortedTxn(5, 31, 50, 46))
    assert idx.collect(10, 30).complete


def test_a_torn_entry_or_foreign_version_asks_for_a_rebuild(tmp_path):
    path = tmp_path / "0.txnindex"
    idx = TransactionIndex(path, 0)
    idx.append(AbortedTxn(1, 0, 10, 0))
    with open(path, "ab") as f:
        f.write(b"\x00" * 20)  # a crash inside the second entry
    torn = TransactionIndex(path, 0)
    with pytest.raises(CorruptIndexError):
        torn.sanity_check()
    torn.truncate_to(11)  # rewritten whole
    TransactionIndex(path, 0).sanity_check()
    path.write_bytes(struct.pack(">hqqqq", 1, 1, 0, 10, 0))
    with pytest.raises(CorruptIndexError):
        TransactionIndex(path, 0).sanity_check()


def test_an_abort_before_the_segment_is_corrupt(tmp_path):
    path = tmp_path / "00000000000000000050.txnindex"
    path.write_bytes(struct.pack(">hqqqq", 0, 1, 0, 10, 0))
    with pytest.raises(CorruptIndexError):
        TransactionIndex(path, 50).sanity_check()


def test_reset_rename_and_delete(tmp_path):
    idx = TransactionIndex(tmp_path / "0.txnindex", 0)
    idx.append(AbortedTxn(1, 0, 10, 0))
    idx.rename(tmp_path / "0.txnindex.cleaned")
    assert idx.path.exists() and not (tmp_path / "0.txnindex").exists()
    idx.flush()
    idx.reset()
    assert not idx.path.exists() and len(idx) == 0
    idx.append(AbortedTxn(1, 0, 10, 0))
    idx.delete()
    assert not idx.path.exists()
