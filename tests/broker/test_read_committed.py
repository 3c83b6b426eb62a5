"""read_committed against a log holding transactions, as Kafka would have
written it (batches with the transactional bit, commit and abort markers):
librdkafka's consumer, whose default isolation is read_committed, sees the
committed records only and stops at the open transaction (the last stable
offset); at read_uncommitted it sees every record; ListOffsets(latest)
answers the last stable offset at read_committed and the high watermark at
read_uncommitted."""

from __future__ import annotations

import pytest

from pybroker.protocol.records import NewRecord, build_batch
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog

from ..storage.txn_batches import marker, txn_batch
from ..txn.reading import READ_COMMITTED, READ_UNCOMMITTED, latest, values


def _write_transactions(plog) -> None:
    """Offsets 0-1 aborted (producer 1000), 2 committed (1001), 3 and 4
    their markers, 5 an open transaction (1002), 6 a plain record."""
    plog.append_as_follower(txn_batch(1000, [b"aborted-0", b"aborted-1"], 0))
    plog.append_as_follower(txn_batch(1001, [b"committed"], 2))
    plog.append_as_follower(marker(1000, False, 3))
    plog.append_as_follower(marker(1001, True, 4))
    plog.append_as_follower(txn_batch(1002, [b"open"], 5))
    plog.append_as_follower(build_batch([NewRecord(value=b"plain")], base_offset=6))
    plog.flush()


@pytest.fixture
def broker(broker_process, tmp_path):
    """A broker whose topic's log got its transactions while it was stopped."""
    from confluent_kafka.admin import AdminClient, NewTopic

    data_dir = tmp_path / "data"
    proc = broker_process({"auto.create.topics.enable": "false"}, data_dir=data_dir)
    admin = AdminClient({"bootstrap.servers": proc.bootstrap})
    assert admin.create_topics([NewTopic("txn", 1, 1)])["txn"].result(30) is None
    assert proc.stop() == 0
    plog = PartitionLog(data_dir / "txn-0", LogConfig())
    _write_transactions(plog)
    plog.close()
    proc.start()
    return proc


def test_read_committed_sees_committed_records_up_to_the_open_transaction(broker):
    assert values(broker.bootstrap, "txn", READ_COMMITTED, 1) == ["committed"]
    everything = values(broker.bootstrap, "txn", READ_UNCOMMITTED, 5)
    assert everything == ["aborted-0", "aborted-1", "committed", "open", "plain"]
    assert latest(broker.bootstrap, "txn", 1) == 5
    assert latest(broker.bootstrap, "txn", 0) == 7
