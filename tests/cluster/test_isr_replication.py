"""acks=all on three brokers that replicate: topic RF 3 with
min.insync.replicas=2. Writes with acks=all are acknowledged while two
replicas are in sync; a stopped follower leaves the ISR once it has
lagged behind the leader's writes for replica.lag.time.max.ms, and the
writes go on; with both followers out the ISR is the leader alone,
acks=all is refused NOT_ENOUGH_REPLICAS (nothing written) while acks=1 is
accepted but not exposed to consumers; the followers started again catch
up, join the ISR, the high watermark reaches the log end, and every
replica is byte-identical below it (Kafka's format, replica_files)."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import NotEnoughReplicasError

from pybroker.protocol.error_codes import ErrorCode

from ..broker.raw_requests import produce_request
from . import replica_files
from .broker_support import metadata, partitions_view, request, wait_for
from .test_followers import create, three_brokers

LAG_MS = 1000
PROPS = {
    "replica.lag.time.max.ms": str(LAG_MS),
    "replica.fetch.backoff.ms": "100",
    "offsets.topic.replication.factor": "3",
}
TOPIC = "acks-all"


@pytest.fixture
def brokers(zk_connect, tmp_path):
    with three_brokers(zk_connect, tmp_path, PROPS) as b:
        yield b


def isr(bootstrap: str) -> list[int]:
    view = partitions_view(metadata(bootstrap, [TOPIC]), TOPIC)
    return sorted(view[0][4]) if view else []


def produce_code(bootstrap: str, acks: int, value: bytes) -> ErrorCode:
    response = request(bootstrap, produce_request(TOPIC, 0, [value], acks=acks), 9)
    return response.responses[0].partition_responses[0].error_code


def send_all(bootstrap: str, values: list[bytes]) -> list[int]:
    """acks=all through kafka-python; the offsets acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=0, linger_ms=0)
    try:
        futures = [producer.send(TOPIC, v, partition=0) for v in values]
        return [f.get(timeout=30).offset for f in futures]
    finally:
        producer.close(timeout=10)


def end_offset(bootstrap: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tp = TopicPartition(TOPIC, 0)
        return consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


def test_acks_all_with_followers_stopped_and_back(brokers, tmp_path):
    bootstrap = brokers.bootstrap(1)
    create(bootstrap, TOPIC, [[1, 2, 3]], {"min.insync.replicas": "2"})
    wait_for(lambda: isr(bootstrap) == [1, 2, 3], what="the ISR of three")
    leader = brokers.partition(1, TOPIC, 0)

    assert send_all(bootstrap, [b"a%d" % i for i in range(50)]) == list(range(50))
    assert end_offset(bootstrap) == 50

    # One follower stopped: the controller takes it out of the ISR, and the
    # writes go on without it.
    brokers.stop(3)
    assert send_all(bootstrap, [b"b%d" % i for i in range(50)]) == list(range(50, 100))
    assert leader.isr == {1, 2}
    wait_for(lambda: isr(bootstrap) == [1, 2], what="the metadata showing the ISR written")

    # Both stopped: the leader alone, below min.insync.replicas.
    brokers.stop(2)
    assert produce_code(bootstrap, 1, b"c0") == ErrorCode.NONE
    wait_for(lambda: isr(bootstrap) == [1], what="2 leaving the ISR")
    end = leader.log_end_offset
    assert end == 101
    assert produce_code(bootstrap, -1, b"refused") == ErrorCode.NOT_ENOUGH_REPLICAS
    with pytest.raises(NotEnoughReplicasError):
        send_all(bootstrap, [b"refused too"])
    assert leader.log_end_offset == end  # nothing written
    assert produce_code(bootstrap, 1, b"c1") == ErrorCode.NONE
    # Written, not committed: consumers see no record the followers lack.
    # (ListOffsets may answer OFFSET_NOT_AVAILABLE meanwhile, as Kafka's
    # does: the controller's ISR change began a leader epoch that can start
    # above the high watermark.)
    assert leader.high_watermark == 100

    # Both back: they catch up, join, and the high watermark reaches the end.
    brokers.start(2)
    brokers.start(3)
    wait_for(lambda: isr(bootstrap) == [1, 2, 3], what="the ISR of three again")
    wait_for(lambda: end_offset(bootstrap) == 102, what="the high watermark past the acks=1 records")
    assert send_all(bootstrap, [b"d%d" % i for i in range(10)]) == list(range(102, 112))
    hw = leader.high_watermark
    assert hw == leader.log_end_offset == 112
    batches = replica_files.compare({n: tmp_path / f"broker{n}" for n in (1, 2, 3)}, TOPIC, 0, hw)
    assert batches[-1].last_offset == 111
