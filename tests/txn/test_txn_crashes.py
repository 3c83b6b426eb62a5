"""Crashes in the middle of a transaction's end, on one node (kill -9 of
the broker process): after the restart every transaction ends as the
coordinator decided, and nothing is torn.

A crash after the coordinator wrote PrepareCommit / PrepareAbort and
before the markers (or after some of them) is made exactly: the
transaction is left open by a real producer, the broker is killed, and
the record the coordinator writes next (and a marker, for the crash
during the markers) is appended to the logs while it is down, as the
coordinator would have written them. The crash during ``.txnindex``
writes tears the index of an aborted transaction's segment.
"""

from __future__ import annotations

import time

import pytest

from pybroker.groups import partition_for
from pybroker.protocol.records import NewRecord, build_batch, build_control_batch, split_batches
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog
from pybroker.txn.coordinator import TXN_TOPIC
from pybroker.txn.records import decode_key, decode_value, encode_key, encode_value
from pybroker.txn.state import TxnState

from ..broker.clients import Confluent
from .drivers import ConfluentTxn
from .reading import READ_COMMITTED, READ_UNCOMMITTED, latest, values

TXN_PARTITIONS = 2
PROPS = {
    "auto.create.topics.enable": "false",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.num.partitions": str(TXN_PARTITIONS),
}
TXN_ID = "crash-txn"
DEADLINE_S = 60


def _open(path) -> PartitionLog:
    return PartitionLog(path, LogConfig())


def _states(data_dir, txn_id: str = TXN_ID) -> list:
    """Every value written for ``txn_id``, in log order."""
    plog = _open(data_dir / f"{TXN_TOPIC}-{partition_for(txn_id, TXN_PARTITIONS)}")
    try:
        out = []
        data = plog.read(plog.log_start_offset, 1 << 24, max_offset=plog.log_end_offset).data
        for batch in split_batches(data)[0]:
            for record in batch.records():
                if not batch.is_control and decode_key(record.key) == txn_id:
                    out.append(decode_value(record.value))
        return out
    finally:
        plog.close()


def _append(path, data_at) -> None:
    """Append ``data_at(log end offset)`` to the log at ``path``, as its leader would have."""
    plog = _open(path)
    try:
        plog.append_as_follower(data_at(plog.log_end_offset))
        plog.flush()
    finally:
        plog.close()


def _open_transaction(proc) -> None:
    """A transaction over out-0 and out-1, left open; then kill -9."""
    bootstrap = proc.bootstrap
    Confluent(bootstrap).create_topic("out", 2)
    producer = ConfluentTxn(bootstrap, "out", "out", TXN_ID)
    producer.begin()
    producer.p.produce("out", b"m0", partition=0)
    producer.p.produce("out", b"m1", partition=1)
    assert producer.p.flush(30) == 0
    proc.kill()
    producer.close()


def _wait_for_lso(bootstrap: str, partitions=(0, 1)) -> None:
    deadline = time.monotonic() + DEADLINE_S
    for p in partitions:
        while latest(bootstrap, "out", 1, p) != latest(bootstrap, "out", 0, p):
            assert time.monotonic() < deadline, f"out-{p}: the transaction was never finished"
            time.sleep(0.1)


@pytest.mark.parametrize(
    ("commit", "marked"),
    [(True, ()), (False, ()), (True, (0,))],
    ids=["prepare-commit", "prepare-abort", "commit-during-markers"],
)
def test_a_prepared_transaction_is_finished_after_a_crash(broker_process, tmp_path, commit, marked):
    data_dir = tmp_path / "data"
    proc = broker_process(PROPS, data_dir=data_dir)
    _open_transaction(proc)
    ongoing = _states(data_dir)[-1]
    assert ongoing.state == TxnState.ONGOING and ongoing.partitions == {"out": [0, 1]}
    ongoing.state = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
    ongoing.last_update_ms += 1
    record = NewRecord(key=encode_key(TXN_ID), value=encode_value(ongoing))
    _append(data_dir / f"{TXN_TOPIC}-{partition_for(TXN_ID, TXN_PARTITIONS)}",
            lambda at: build_batch([record], base_offset=at))
    for p in marked:
        _append(data_dir / f"out-{p}", lambda at: build_control_batch(
            ongoing.producer_id, ongoing.producer_epoch, commit, 0, ongoing.last_update_ms, base_offset=at))

    proc.start()
    _wait_for_lso(proc.bootstrap)
    expected = [["m0"], ["m1"]] if commit else [[], []]
    for p in (0, 1):
        assert values(proc.bootstrap, "out", READ_COMMITTED, len(expected[p]), p) == expected[p]
        assert values(proc.bootstrap, "out", READ_UNCOMMITTED, 1, p) == [f"m{p}"]
    # The same transactional id carries on with a new epoch.
    producer = ConfluentTxn(proc.bootstrap, "out", "out", TXN_ID)
    producer.begin()
    producer.p.produce("out", b"after", partition=0)
    producer.commit()
    producer.close()
    assert proc.stop() == 0
    states = _states(data_dir)
    ended = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
    assert ended in [s.state for s in states]
    assert states[-1].producer_epoch > ongoing.producer_epoch


def test_a_torn_txnindex_is_rebuilt_and_aborted_records_stay_invisible(broker_process, tmp_path):
    data_dir = tmp_path / "data"
    proc = broker_process(PROPS, data_dir=data_dir)
    bootstrap = proc.bootstrap
    Confluent(bootstrap).create_topic("out", 1)
    producer = ConfluentTxn(bootstrap, "out", "out", TXN_ID)
    for value, commit in (("kept", True), ("dropped", False), ("kept-too", True)):
        producer.begin()
        producer.send(value)
        producer.commit() if commit else producer.abort()
    producer.close()
    _wait_for_lso(bootstrap, (0,))
    proc.kill()
    (index,) = (data_dir / "out-0").glob("*.txnindex")
    assert index.stat().st_size == 34
    with open(index, "r+b") as f:  # half an entry, as a crash mid-write leaves it
        f.truncate(17)
    proc.start()
    assert values(proc.bootstrap, "out", READ_COMMITTED, 2) == ["kept", "kept-too"]
    assert values(proc.bootstrap, "out", READ_UNCOMMITTED, 3) == ["kept", "dropped", "kept-too"]
    assert proc.stop() == 0
    assert index.stat().st_size == 34
