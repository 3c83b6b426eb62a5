"""The connection layer, driven over real sockets with exact bytes."""

import os
import threading
import time

import pytest

from pybroker.handlers import HANDLERS
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.framing import encode_request
from pybroker.protocol.messages.api_versions_request import ApiVersionsRequest
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from pybroker.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.storage.manager import CLEAN_SHUTDOWN_FILE
from pybroker.testing import running_broker
from tests.broker.wire import Wire

from .raw_requests import long_poll


@pytest.fixture(scope="module")
def broker():
    with running_broker({"connections.max.idle.ms": "400"}) as b:
        yield b


def produce(topic, value, acks=1):
    batch = build_batch([NewRecord(value=value)])
    return ProduceRequest(
        acks=acks,
        timeout_ms=5000,
        topic_data=[TopicProduceData(name=topic, partition_data=[PartitionProduceData(index=0, records=batch)])],
    )




def test_pipelined_requests_are_answered_in_order(broker):
    w = Wire(broker.bootstrap_servers)
    for i in range(50):
        if i % 2:
            w.send(ApiVersionsRequest(), 2, i)
        else:
            w.send(MetadataRequest(topics=[MetadataRequestTopic(name="pipe")]), 9, i)
    assert [w.correlation_of_next() for _ in range(50)] == list(range(50))
    w.close()


def test_acks_zero_gets_no_response(broker):
    w = Wire(broker.bootstrap_servers)
    w.send(MetadataRequest(topics=[MetadataRequestTopic(name="zero")]), 9, 1)
    assert w.correlation_of_next() == 1
    w.send(produce("zero", b"a", acks=0), 9, 2)
    w.send(ApiVersionsRequest(), 2, 3)
    assert w.correlation_of_next() == 3
    assert broker.broker.replicas.partition("zero", 0).log.log_end_offset == 1
    w.close()


def test_a_long_poll_keeps_its_place_in_line(broker):
    w = Wire(broker.bootstrap_servers)
    w.send(MetadataRequest(topics=[MetadataRequestTopic(name="poll")]), 9, 1)
    w.receive(3, 9)
    fetch = long_poll("poll", 3000)
    w.send(fetch, 11, 2)
    w.send(ApiVersionsRequest(), 2, 3)
    other = Wire(broker.bootstrap_servers)
    other.send(produce("poll", b"wake up"), 9, 1)
    _, resp = other.receive(0, 9)
    assert resp.responses[0].partition_responses[0].error_code == 0
    _, fetched = w.receive(1, 11)
    assert w.correlation_of_next() == 3
    assert bytes(fetched.responses[0].partitions[0].records).endswith(b"wake up\x00")
    w.close()
    other.close()


def test_idle_connections_are_closed(broker):
    w = Wire(broker.bootstrap_servers)
    w.send(ApiVersionsRequest(), 2, 1)
    assert w.correlation_of_next() == 1
    start = time.monotonic()
    assert w.closed_by_peer()
    assert time.monotonic() - start < 5
    w.close()


def test_a_connection_owing_a_response_is_not_idle(broker):
    # connections.max.idle.ms is 400 here; the long poll waits 1.5 s.
    w = Wire(broker.bootstrap_servers)
    w.send(MetadataRequest(topics=[MetadataRequestTopic(name="owed")]), 9, 1)
    w.receive(3, 9)
    fetch = long_poll("owed", 1500)
    w.send(fetch, 11, 2)
    _, fetched = w.receive(1, 11)
    assert fetched.responses[0].partitions[0].error_code == 0
    w.send(ApiVersionsRequest(), 2, 3)
    assert w.correlation_of_next() == 3
    w.close()


def test_responses_the_socket_cannot_take_yet_keep_their_order(broker):
    # Thousands of requests sent while nothing is read: answers fill the
    # socket, are partly written from the reader, and the rest queue for
    # the writer; the client must still get every one, whole and in order.
    count = 20000
    frames = b"".join(
        encode_request(ApiVersionsRequest(client_software_name="w", client_software_version="1"), 3, i, "wire")
        for i in range(count)
    )
    w = Wire(broker.bootstrap_servers, timeout=30)
    sender = threading.Thread(target=w.send_raw, args=(frames,))
    sender.start()
    try:
        for i in range(count):
            correlation, resp = w.receive(18, 3)
            assert correlation.correlation_id == i
            assert resp.error_code == 0 and len(resp.api_keys) == len(HANDLERS)
    finally:
        sender.join(30)
        w.close()


def test_api_versions_for_a_version_we_do_not_have(broker):
    w = Wire(broker.bootstrap_servers)
    # v5 (Kafka 4.4) has no schema here: hand-write the v3-style frame.
    body = ApiVersionsRequest(client_software_name="x", client_software_version="1").encode(3)
    header = (18).to_bytes(2, "big") + (5).to_bytes(2, "big") + (9).to_bytes(4, "big") + b"\x00\x01c\x00"
    frame = header + body
    w.send_raw(len(frame).to_bytes(4, "big") + frame)
    _, resp = w.receive(18, 0)
    assert resp.error_code == ErrorCode.UNSUPPORTED_VERSION
    assert [(k.api_key, k.min_version, k.max_version) for k in resp.api_keys] == [(18, 0, 4)]
    w.close()


def test_api_versions_advertises_exactly_the_registered_handlers(broker):
    from pybroker.handlers import HANDLERS

    w = Wire(broker.bootstrap_servers)
    w.send(ApiVersionsRequest(client_software_name="pytest", client_software_version="1.0"), 3, 1)
    _, resp = w.receive(18, 3)
    advertised = {(k.api_key, k.min_version, k.max_version) for k in resp.api_keys}
    assert advertised == {(h.api_key, h.min_version, h.max_version) for h in HANDLERS.values()}
    w.send(ApiVersionsRequest(client_software_name="bad name!", client_software_version="1"), 3, 2)
    assert w.receive(18, 3)[1].error_code == ErrorCode.INVALID_REQUEST
    w.close()


def test_graceful_stop_leaves_the_clean_shutdown_marker(broker_process):
    proc = broker_process()
    w = Wire(proc.bootstrap)
    w.send(produce("durable", b"x", acks=-1), 9, 1)
    _, resp = w.receive(0, 9)
    assert resp.responses[0].partition_responses[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    w.send(MetadataRequest(topics=[MetadataRequestTopic(name="durable")]), 9, 2)
    w.receive(3, 9)
    w.send(produce("durable", b"x", acks=-1), 9, 3)
    assert w.receive(0, 9)[1].responses[0].partition_responses[0].base_offset == 0
    w.close()
    assert proc.stop() == 0
    assert (proc.data_dir / CLEAN_SHUTDOWN_FILE).exists()
    proc.start()
    assert not (proc.data_dir / CLEAN_SHUTDOWN_FILE).exists()
    assert "stopped; logs flushed" in proc.log_text()
    os.kill(proc.proc.pid, 9)


def test_a_batch_without_its_max_timestamp_gets_it_from_its_records(broker):
    # sarama 1.22 sends max timestamp -1; Kafka rewrites it from the records.
    batch = bytearray(build_batch([NewRecord(value=b"a", timestamp=5000), NewRecord(value=b"b", timestamp=7000)]))
    from pybroker.protocol.records import RecordBatch

    view = RecordBatch(memoryview(batch))
    view.set_max_timestamp(-1)
    req = ProduceRequest(
        acks=1,
        timeout_ms=5000,
        topic_data=[
            TopicProduceData(name="maxts", partition_data=[PartitionProduceData(index=0, records=bytes(batch))])
        ],
    )
    w = Wire(broker.bootstrap_servers)
    w.send(MetadataRequest(topics=[MetadataRequestTopic(name="maxts")]), 9, 1)
    w.receive(3, 9)
    w.send(req, 9, 2)
    assert w.receive(0, 9)[1].responses[0].partition_responses[0].error_code == 0
    plog = broker.broker.replicas.partition("maxts", 0).log
    assert plog.max_timestamp() == (7000, 1)
    assert plog.offset_for_timestamp(6000) == (7000, 1)
    w.close()


def test_old_versions_kept_for_older_clients(broker):
    """OffsetCommit v0-1 and DescribeConfigs v0 (gone from Kafka 4) still
    work: sarama 1.22, packaged by Debian, sends them."""
    from pybroker.protocol.messages.describe_configs_request import DescribeConfigsRequest, DescribeConfigsResource
    from pybroker.protocol.messages.offset_commit_request import (
        OffsetCommitRequest,
        OffsetCommitRequestPartition,
        OffsetCommitRequestTopic,
    )
    from pybroker.protocol.messages.offset_fetch_request import OffsetFetchRequest, OffsetFetchRequestTopic

    w = Wire(broker.bootstrap_servers)
    w.send(MetadataRequest(topics=[MetadataRequestTopic(name="old")]), 9, 1)
    w.receive(3, 9)
    for version, group in ((0, "old-g0"), (1, "old-g1")):
        commit = OffsetCommitRequest(
            group_id=group,
            topics=[
                OffsetCommitRequestTopic(
                    name="old",
                    partitions=[
                        OffsetCommitRequestPartition(partition_index=0, committed_offset=7, committed_metadata="m")
                    ],
                )
            ],
        )
        w.send(commit, version, 2)
        assert w.receive(8, version)[1].topics[0].partitions[0].error_code == 0
        w.send(
            OffsetFetchRequest(group_id=group, topics=[OffsetFetchRequestTopic(name="old", partition_indexes=[0])]),
            1,
            3,
        )
        assert w.receive(9, 1)[1].topics[0].partitions[0].committed_offset == 7
    w.send(
        DescribeConfigsRequest(
            resources=[
                DescribeConfigsResource(resource_type=2, resource_name="old", configuration_keys=["cleanup.policy"])
            ]
        ),
        0,
        4,
    )
    entry = w.receive(32, 0)[1].results[0].configs[0]
    assert (entry.name, entry.value, entry.is_default) == ("cleanup.policy", "delete", True)
    w.close()
