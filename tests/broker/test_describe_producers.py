"""DescribeProducers on a single node: idempotent producers of two real
clients write, kafka-python's admin client describes them, and what it
shows is checked against the batches in the segment files and against
what each client sent. Errors over the raw codec client: unknown and
invalid topics, unknown partitions, an offline log directory."""

from __future__ import annotations

import contextlib
import errno

import pytest
import trio
from confluent_kafka import Producer
from kafka import KafkaAdminClient, KafkaProducer
from kafka import TopicPartition as KTP
from kafka.errors import UnknownTopicOrPartitionError

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.describe_producers_request import DescribeProducersRequest, TopicRequest
from pybroker.protocol.registry import ApiKey
from pybroker.storage.segment import LogSegment
from pybroker.testing import running_broker

from .raw_requests import create, produce, produce_request
from .wire import Wire
from .workload import batches_on_disk, unique_topic

T0 = 1_700_000_000_000
T1 = 1_700_000_500_000


@contextlib.contextmanager
def admin(bootstrap: str):
    client = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="describe-producers", request_timeout_ms=15000)
    try:
        yield client
    finally:
        client.close()


def describe(bootstrap: str, topic: str, partitions, broker_id=None) -> dict[int, list]:
    """{partition: [ProducerState]} as kafka-python's admin client reports it."""
    with admin(bootstrap) as a:
        found = a.describe_producers([KTP(topic, p) for p in partitions], broker_id=broker_id)
    return {tp.partition: sorted(state.active_producers) for tp, state in found.items()}


def raw_describe(bootstrap: str, wanted: dict[str, list[int]]) -> dict[tuple[str, int], tuple]:
    """{(topic, partition): (error code, producers)} from one raw request."""
    w = Wire(bootstrap)
    try:
        w.send(
            DescribeProducersRequest(topics=[TopicRequest(name=t, partition_indexes=ps) for t, ps in wanted.items()]),
            0,
            5,
        )
        _, resp = w.receive(ApiKey.DESCRIBE_PRODUCERS, 0)
    finally:
        w.close()
    return {(t.name, p.partition_index): (p.error_code, p.active_producers) for t in resp.topics for p in t.partitions}


def expected_from_disk(data_dir, topic: str) -> dict[int, list[tuple]]:
    """What the segment files say each partition's producers are: the
    epoch, last sequence and max timestamp of each producer's last batch."""
    last: dict[int, dict[int, tuple]] = {}
    for partition, b in batches_on_disk(data_dir, topic):
        if b.producer_id >= 0:
            last.setdefault(partition, {})[b.producer_id] = (b.producer_epoch, b.last_sequence, b.max_timestamp)
    return {
        p: sorted((pid, epoch, seq, ts, -1, -1) for pid, (epoch, seq, ts) in by_pid.items())
        for p, by_pid in last.items()
    }


def kafka_python_writes(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
    try:
        futures = [
            producer.send(topic, value=b"kp-%d-%d" % (p, i), partition=p, timestamp_ms=T0 + i)
            for p, n in counts.items()
            for i in range(n)
        ]
        producer.flush(30)
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close(timeout=10)


def confluent_writes(bootstrap: str, topic: str, partition: int, n: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    errors = []
    for i in range(n):
        producer.produce(
            topic,
            value=b"ck-%d" % i,
            partition=partition,
            timestamp=T1 + i,
            on_delivery=lambda err, msg: err is not None and errors.append(err),
        )
    assert producer.flush(30) == 0 and errors == []


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


def test_idempotent_producers_are_described_as_written_and_after_a_restart(data_dir):
    topic = unique_topic("producers")
    with running_broker({"num.partitions": "3"}, data_dir=data_dir) as b:
        w = Wire(b.bootstrap_servers)
        create(w, topic)
        w.close()
        kafka_python_writes(b.bootstrap_servers, topic, {0: 7, 1: 3})
        confluent_writes(b.bootstrap_servers, topic, 0, 5)
        got = describe(b.bootstrap_servers, topic, [0, 1, 2])
        on_disk = expected_from_disk(data_dir, topic)

        # Each client's own view: sequences count its messages from 0 per
        # partition, timestamps are the ones it sent, no transactions.
        assert sorted((s.last_sequence, s.last_timestamp) for s in got[0]) == [(4, T1 + 4), (6, T0 + 6)]
        assert [(s.last_sequence, s.last_timestamp) for s in got[1]] == [(2, T0 + 2)]
        assert got[2] == []
        kafka_python_id = next(s.producer_id for s in got[0] if s.last_sequence == 6)
        assert got[1][0].producer_id == kafka_python_id
        assert len({s.producer_id for s in got[0]}) == 2
        for s in got[0] + got[1]:
            assert s.producer_id >= 0 and s.producer_epoch == 0
            assert (s.coordinator_epoch, s.current_transaction_start_offset) == (-1, -1)
        # And the log's: the last batch of each producer on disk.
        assert {p: [tuple(s) for s in states] for p, states in got.items() if states} == on_disk

    # The state comes back from the snapshot (and the log) after a restart.
    with running_broker({"num.partitions": "3"}, data_dir=data_dir) as b:
        again = describe(b.bootstrap_servers, topic, [0, 1, 2])
    assert {p: [without_timestamp(s) for s in states] for p, states in again.items()} == {
        p: [without_timestamp(s) for s in states] for p, states in got.items()
    }


def without_timestamp(state) -> tuple:
    return state._replace(last_timestamp=None)


def test_last_timestamp_survives_a_restart(data_dir):
    topic = unique_topic("timestamps")
    with running_broker({"num.partitions": "1"}, data_dir=data_dir) as b:
        w = Wire(b.bootstrap_servers)
        create(w, topic)
        w.close()
        kafka_python_writes(b.bootstrap_servers, topic, {0: 3})
        assert [s.last_timestamp for s in describe(b.bootstrap_servers, topic, [0])[0]] == [T0 + 2]
    with running_broker({"num.partitions": "1"}, data_dir=data_dir) as b:
        assert [s.last_timestamp for s in describe(b.bootstrap_servers, topic, [0])[0]] == [T0 + 2]


def test_expired_producers_are_no_longer_active(data_dir):
    topic = unique_topic("expiring")
    with running_broker({"num.partitions": "1"}, data_dir=data_dir) as b:
        w = Wire(b.bootstrap_servers)
        create(w, topic)
        w.close()
        kafka_python_writes(b.bootstrap_servers, topic, {0: 2})
        assert [s.last_sequence for s in describe(b.bootstrap_servers, topic, [0])[0]] == [1]
        # An hour past producer.id.expiration.ms (a day by default) from now.
        later = T0 * 2
        expired = trio.from_thread.run_sync(b.broker.replicas.expire_producers, later, trio_token=b.token)
        assert expired == 1
        assert describe(b.bootstrap_servers, topic, [0]) == {0: []}


def test_unknown_and_invalid_topics_and_partitions(data_dir):
    topic = unique_topic("errors")
    with running_broker({"num.partitions": "2"}, data_dir=data_dir) as b:
        w = Wire(b.bootstrap_servers)
        create(w, topic)
        produce(w, topic, 0, [b"not idempotent"])
        w.close()
        got = raw_describe(b.bootstrap_servers, {topic: [0, 1, 2, 0], "no-such-topic": [0], "bad/name": [3]})
        assert got == {
            (topic, 0): (ErrorCode.NONE, []),  # a producer without an id is not one
            (topic, 1): (ErrorCode.NONE, []),
            (topic, 2): (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, []),
            ("no-such-topic", 0): (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, []),
            ("bad/name", 3): (ErrorCode.INVALID_TOPIC_EXCEPTION, []),
        }
        assert raw_describe(b.bootstrap_servers, {}) == {}
        # A real client sees the error as Kafka's.
        with pytest.raises(UnknownTopicOrPartitionError):
            describe(b.bootstrap_servers, topic, [5], broker_id=b.broker.config.node_id)


def test_a_partition_in_an_offline_log_dir_is_a_storage_error(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    with running_broker({"log.dirs": f"{first},{second}", "num.partitions": "1"}, data_dir=first) as b:
        w = Wire(b.bootstrap_servers)
        create(w, "good", "bad")  # one partition each, one in each dir
        assert b.broker.replicas.partition("bad", 0).log.directory.parent == second
        kafka_python_writes(b.bootstrap_servers, "good", {0: 1})
        kafka_python_writes(b.bootstrap_servers, "bad", {0: 1})
        real_append = LogSegment.append

        def failing_disk(seg, data, batches):
            if seg.directory.parent == second:
                raise OSError(errno.EIO, "Input/output error")
            return real_append(seg, data, batches)

        monkeypatch.setattr(LogSegment, "append", failing_disk)
        w.send(produce_request("bad", 0, [b"x"]), 9, 1)
        assert w.receive(ApiKey.PRODUCE, 9)[1].responses[0].partition_responses[0].error_code == (
            ErrorCode.KAFKA_STORAGE_ERROR
        )
        w.close()
        monkeypatch.setattr(LogSegment, "append", real_append)
        got = raw_describe(b.bootstrap_servers, {"bad": [0], "good": [0]})
        assert got["bad", 0] == (ErrorCode.KAFKA_STORAGE_ERROR, [])
        code, producers = got["good", 0]
        assert code == ErrorCode.NONE and [p.last_sequence for p in producers] == [0]
