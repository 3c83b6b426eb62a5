"""An error in one partition costs that partition, never the request, the
connection or the broker.

The broker runs in this process with two log dirs, so that faults can be
injected into the storage of one partition (the disk tests in
test_disk_faults.py make real ones): an I/O error takes its log dir
offline (KAFKA_STORAGE_ERROR from then on, the other dir serves on); any
other exception is a bug, logged with its traceback and answered
UNKNOWN_SERVER_ERROR for that partition alone. Requests go over real
sockets with the raw codec client, several partitions per request.
"""

from __future__ import annotations

import errno
import logging

import pytest

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.delete_records_request import DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic
from pybroker.protocol.messages.describe_log_dirs_request import DescribeLogDirsRequest
from pybroker.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pybroker.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from pybroker.protocol.messages.offset_for_leader_epoch_request import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)
from pybroker.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.protocol.registry import ApiKey
from pybroker.replica.partition import Partition
from pybroker.testing import running_broker
from pybroker.storage.log import PartitionLog
from pybroker.storage.segment import LogSegment

from .raw_requests import create
from .wire import Wire

T0 = 1_700_000_000_000


@pytest.fixture
def two_dirs(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    with running_broker({"log.dirs": f"{first},{second}", "num.partitions": "1"}, data_dir=first) as b:
        w = Wire(b.bootstrap_servers)
        create(w, "good", "bad")  # one partition each, one in each dir
        assert b.broker.replicas.partition("bad", 0).log.directory.parent == second
        try:
            yield b, w, second
        finally:
            w.close()


def produce(w: Wire, topics: list[str], correlation_id: int) -> dict[str, object]:
    w.send(
        ProduceRequest(
            acks=-1,
            timeout_ms=5000,
            topic_data=[
                TopicProduceData(
                    name=t,
                    partition_data=[
                        PartitionProduceData(index=0, records=build_batch([NewRecord(b"k", t.encode(), (), T0)]))
                    ],
                )
                for t in topics
            ],
        ),
        9,
        correlation_id,
    )
    _, resp = w.receive(ApiKey.PRODUCE, 9)
    return {t.name: t.partition_responses[0] for t in resp.responses}


def fetch(w: Wire, topics: list[str], correlation_id: int) -> dict[str, object]:
    w.send(
        FetchRequest(
            max_wait_ms=0,
            min_bytes=0,
            max_bytes=1 << 20,
            topics=[
                FetchTopic(
                    topic=t, partitions=[FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)]
                )
                for t in topics
            ],
        ),
        12,
        correlation_id,
    )
    _, resp = w.receive(ApiKey.FETCH, 12)
    return {t.topic: t.partitions[0] for t in resp.responses}


def list_offsets(w: Wire, topics: list[str], timestamp: int, correlation_id: int) -> dict[str, object]:
    w.send(
        ListOffsetsRequest(
            replica_id=-1,
            topics=[
                ListOffsetsTopic(name=t, partitions=[ListOffsetsPartition(partition_index=0, timestamp=timestamp)])
                for t in topics
            ],
        ),
        7,
        correlation_id,
    )
    _, resp = w.receive(ApiKey.LIST_OFFSETS, 7)
    return {t.name: t.partitions[0] for t in resp.topics}


def test_an_io_error_takes_one_dir_offline_and_the_request_carries_on(two_dirs, monkeypatch):
    b, w, second = two_dirs
    assert {t: p.error_code for t, p in produce(w, ["good", "bad"], 1).items()} == {"good": 0, "bad": 0}
    real_append = LogSegment.append

    def failing_disk(seg, data, batches):
        if seg.directory.parent == second:
            raise OSError(errno.EIO, "Input/output error")
        return real_append(seg, data, batches)

    monkeypatch.setattr(LogSegment, "append", failing_disk)
    got = produce(w, ["good", "bad"], 2)
    assert (got["good"].error_code, got["good"].base_offset) == (ErrorCode.NONE, 1)
    assert got["bad"].error_code == ErrorCode.KAFKA_STORAGE_ERROR
    assert "Input/output error" in got["bad"].error_message
    monkeypatch.setattr(LogSegment, "append", real_append)
    # Offline until a restart, even with the fault gone; the other dir serves on.
    got = produce(w, ["bad", "good"], 3)
    assert (got["bad"].error_code, got["good"].error_code) == (ErrorCode.KAFKA_STORAGE_ERROR, ErrorCode.NONE)
    fetched = fetch(w, ["bad", "good"], 4)
    assert fetched["bad"].error_code == ErrorCode.KAFKA_STORAGE_ERROR
    assert (fetched["good"].error_code, fetched["good"].high_watermark) == (ErrorCode.NONE, 3)
    listed = list_offsets(w, ["bad", "good"], -1, 5)
    assert (listed["bad"].error_code, listed["good"].offset) == (ErrorCode.KAFKA_STORAGE_ERROR, 3)
    w.send(DescribeLogDirsRequest(topics=None), 4, 6)
    dirs = {r.log_dir: r for r in w.receive(ApiKey.DESCRIBE_LOG_DIRS, 4)[1].results}
    assert dirs[str(second)].error_code == ErrorCode.KAFKA_STORAGE_ERROR and dirs[str(second)].topics == []
    assert [t.name for r in dirs.values() for t in r.topics] == ["good"]
    w.send(
        DeleteRecordsRequest(
            topics=[
                DeleteRecordsTopic(name=t, partitions=[DeleteRecordsPartition(partition_index=0, offset=1)])
                for t in ("bad", "good")
            ],
            timeout_ms=5000,
        ),
        2,
        7,
    )
    deleted = {t.name: t.partitions[0] for t in w.receive(ApiKey.DELETE_RECORDS, 2)[1].topics}
    assert (deleted["bad"].error_code, deleted["bad"].low_watermark) == (ErrorCode.KAFKA_STORAGE_ERROR, -1)
    assert (deleted["good"].error_code, deleted["good"].low_watermark) == (ErrorCode.NONE, 1)
    w.send(
        OffsetForLeaderEpochRequest(
            topics=[
                OffsetForLeaderTopic(topic=t, partitions=[OffsetForLeaderPartition(partition=0, leader_epoch=0)])
                for t in ("bad", "good")
            ]
        ),
        4,
        8,
    )
    epochs = {t.topic: t.partitions[0] for t in w.receive(ApiKey.OFFSET_FOR_LEADER_EPOCH, 4)[1].topics}
    assert (epochs["bad"].error_code, epochs["good"].error_code, epochs["good"].end_offset) == (
        ErrorCode.KAFKA_STORAGE_ERROR,
        0,
        3,
    )
    w.send(MetadataRequest(topics=[MetadataRequestTopic(name=t) for t in ("bad", "good")]), 12, 9)
    parts = {t.name: t.partitions[0] for t in w.receive(ApiKey.METADATA, 12)[1].topics}
    node = b.broker.node_id
    assert (parts["bad"].error_code, parts["bad"].leader_id, parts["bad"].offline_replicas) == (
        ErrorCode.LEADER_NOT_AVAILABLE,
        -1,
        [node],
    )
    assert (parts["good"].error_code, parts["good"].leader_id, parts["good"].offline_replicas) == (
        ErrorCode.NONE,
        node,
        [],
    )
    assert b.broker.logs.online_dirs == [b.data_dir]


def test_an_unexpected_error_costs_one_partition(two_dirs, monkeypatch, caplog):
    b, w, _ = two_dirs
    produce(w, ["good", "bad"], 1)

    def only_for_good(real):
        def method(self, *args, **kwargs):
            if self.topic == "bad":
                raise RuntimeError("a bug")
            return real(self, *args, **kwargs)

        return method

    monkeypatch.setattr(Partition, "append_as_leader", only_for_good(Partition.append_as_leader))
    monkeypatch.setattr(PartitionLog, "read", only_for_good(PartitionLog.read))
    monkeypatch.setattr(PartitionLog, "offset_for_timestamp", only_for_good(PartitionLog.offset_for_timestamp))
    with caplog.at_level(logging.ERROR):
        got = produce(w, ["bad", "good"], 2)
        assert (got["bad"].error_code, got["good"].error_code) == (ErrorCode.UNKNOWN_SERVER_ERROR, ErrorCode.NONE)
        fetched = fetch(w, ["bad", "good"], 3)
        assert (fetched["bad"].error_code, fetched["bad"].high_watermark) == (ErrorCode.UNKNOWN_SERVER_ERROR, -1)
        assert (fetched["good"].error_code, fetched["good"].high_watermark) == (ErrorCode.NONE, 2)
        listed = list_offsets(w, ["bad", "good"], T0, 4)
        assert (listed["bad"].error_code, listed["good"].error_code, listed["good"].offset) == (
            ErrorCode.UNKNOWN_SERVER_ERROR,
            ErrorCode.NONE,
            0,
        )
    failures = [r for r in caplog.records if r.exc_info and "bad-0" in r.getMessage()]
    assert [r.exc_info[0] for r in failures] == [RuntimeError] * 3
    # Not a storage failure: nothing went offline.
    assert len(b.broker.logs.online_dirs) == 2
