"""read_committed against a log holding transactions, as Kafka would have
written it (batches with the transactional bit, commit and abort markers):
librdkafka's consumer, whose default isolation is read_committed, sees the
committed records only and stops at the open transaction (the last stable
offset); at read_uncommitted it sees every record; ListOffsets(latest)
answers the last stable offset at read_committed and the high watermark at
read_uncommitted."""

from __future__ import annotations

import pytest

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog

from ..storage.txn_batches import marker, txn_batch
from .wire import Wire

LATEST = -1


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


def _consume(bootstrap: str, isolation: str, expect: int) -> list[bytes]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"rc-{isolation}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition("txn", 0, 0)])
    got: list[bytes] = []
    try:
        # Until the expected count, and then until the partition's end is
        # reported: nothing more may follow what was expected.
        for _ in range(200):
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF
                    if len(got) >= expect:
                        break
                    continue
                raise AssertionError(msg.error())
            got.append(msg.value())
    finally:
        consumer.close()
    return got


def _latest(bootstrap: str, isolation: int) -> int:
    w = Wire(bootstrap)
    try:
        body = ListOffsetsRequest(
            replica_id=-1,
            isolation_level=isolation,
            topics=[
                ListOffsetsTopic(name="txn", partitions=[ListOffsetsPartition(partition_index=0, timestamp=LATEST)])
            ],
        )
        w.send(body, 7, 1)
        part = w.receive(body.API_KEY, 7)[1].topics[0].partitions[0]
        assert part.error_code == ErrorCode.NONE
        return part.offset
    finally:
        w.close()


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
    committed = _consume(broker.bootstrap, "read_committed", 1)
    assert committed == [b"committed"]
    everything = _consume(broker.bootstrap, "read_uncommitted", 5)
    assert everything == [b"aborted-0", b"aborted-1", b"committed", b"open", b"plain"]
    assert _latest(broker.bootstrap, 1) == 5
    assert _latest(broker.bootstrap, 0) == 7
