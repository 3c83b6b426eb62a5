"""Offsets committed inside a transaction (TxnOffsetCommit): invisible
until the transaction commits, reported UNSTABLE_OFFSET_COMMIT meanwhile
to an OffsetFetch with require_stable, and kept pending across a broker
restart (the group coordinator reloads them from the log and applies
them on the commit marker). librdkafka's producer, raw OffsetFetch v7."""

from __future__ import annotations

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.offset_fetch_request import OffsetFetchRequest, OffsetFetchRequestTopic

from ..broker.clients import Confluent
from ..broker.wire import Wire
from .drivers import ConfluentTxn
from .reading import committed

PROPS = {"offsets.topic.num.partitions": "1", "transaction.state.log.num.partitions": "1"}
GROUP = "txn-offsets-group"


def _fetch(bootstrap: str, require_stable: bool) -> tuple[int, int]:
    """(offset, error) of the group's partition in-0, by OffsetFetch v7."""
    w = Wire(bootstrap)
    try:
        body = OffsetFetchRequest(group_id=GROUP, require_stable=require_stable,
                                  topics=[OffsetFetchRequestTopic(name="in", partition_indexes=[0])])
        w.send(body, 7, 1)
        response = w.receive(body.API_KEY, 7)[1]
        assert response.error_code == ErrorCode.NONE
        part = response.topics[0].partitions[0]
        return part.committed_offset, part.error_code
    finally:
        w.close()


def test_transactional_offsets_wait_for_the_commit_also_across_a_restart(broker_process, tmp_path):
    proc = broker_process(PROPS, data_dir=tmp_path / "data")
    bootstrap = proc.bootstrap
    Confluent(bootstrap).create_topic("in", 1)
    producer = ConfluentTxn(bootstrap, "in", "in", "offsets-txn")
    try:
        producer.begin()
        producer.send("x")
        producer.offsets(GROUP, 0, 5)
        assert _fetch(bootstrap, True) == (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT)
        assert _fetch(bootstrap, False) == (-1, ErrorCode.NONE)
        proc.restart()
        assert _fetch(bootstrap, True) == (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT)
        producer.commit()
    finally:
        producer.close()
    assert committed(bootstrap, GROUP, "in") == 5
    assert _fetch(bootstrap, True) == (5, ErrorCode.NONE)
