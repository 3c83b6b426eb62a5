"""DescribeProducers in a cluster of two brokers: the leader shows an
idempotent producer's state; a follower answers from its own replica, as
Kafka's does; a broker holding no replica of the partition answers
NOT_LEADER_OR_FOLLOWER, which kafka-python raises when told to ask it."""

import contextlib
import importlib.util

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka import TopicPartition as KTP
from kafka.errors import NotLeaderForPartitionError

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.create_topics_request import (
    CreatableReplicaAssignment,
    CreatableTopic,
    CreateTopicsRequest,
)
from pybroker.protocol.messages.describe_producers_request import DescribeProducersRequest, TopicRequest

from .broker_support import cluster_broker, metadata, partitions_view, request, wait_for


@pytest.fixture
def two(zk_connect, tmp_path):
    """Brokers 1 and 2 of one cluster; {node id: RunningBroker}."""
    with contextlib.ExitStack() as stack:
        brokers = {n: stack.enter_context(cluster_broker(zk_connect, n, tmp_path)) for n in (1, 2)}
        for b in brokers.values():
            wait_for(lambda b=b: len(metadata(b.bootstrap_servers, []).brokers) == 2, what="both brokers registered")
        yield brokers


def create(bootstrap: str, name: str, assignments: list[list[int]]) -> None:
    topic = CreatableTopic(
        name=name,
        num_partitions=-1,
        replication_factor=-1,
        assignments=[CreatableReplicaAssignment(partition_index=i, broker_ids=r) for i, r in enumerate(assignments)],
    )
    assert request(bootstrap, CreateTopicsRequest(topics=[topic], timeout_ms=15000), 7).topics[0].error_code == 0


def led_everywhere(brokers, topic: str) -> bool:
    views = [partitions_view(metadata(b.bootstrap_servers, [topic]), topic) for b in brokers.values()]
    return bool(views[0]) and all(v == views[0] for v in views) and all(p[1] >= 0 for p in views[0])


def write(bootstrap: str, counts: dict[tuple[str, int], int]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5)
    try:
        futures = [
            producer.send(topic, value=b"%d" % i, partition=p) for (topic, p), n in counts.items() for i in range(n)
        ]
        producer.flush(30)
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close(timeout=10)


def describe(bootstrap: str, partitions: list[tuple[str, int]], broker_id=None) -> dict[tuple[str, int], list]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        found = admin.describe_producers([KTP(t, p) for t, p in partitions], broker_id=broker_id)
    finally:
        admin.close()
    return {(tp.topic, tp.partition): sorted(s.active_producers) for tp, s in found.items()}


def raw_describe(bootstrap: str, wanted: dict[str, list[int]]) -> dict[tuple[str, int], tuple]:
    body = DescribeProducersRequest(topics=[TopicRequest(name=t, partition_indexes=ps) for t, ps in wanted.items()])
    resp = request(bootstrap, body, 0)
    return {(t.name, p.partition_index): (p.error_code, p.active_producers) for t in resp.topics for p in t.partitions}


@pytest.fixture
def written(two):
    """led-0 on brokers 1 (leader) and 2, solo-0 on broker 1 alone, both
    written by one idempotent producer through broker 2."""
    b1, b2 = two[1].bootstrap_servers, two[2].bootstrap_servers
    create(b1, "led", [[1, 2]])
    create(b1, "solo", [[1]])
    for topic in ("led", "solo"):
        wait_for(lambda topic=topic: led_everywhere(two, topic), what=f"{topic} led on both brokers")
    write(b2, {("led", 0): 4, ("solo", 0): 2})
    return two


def test_the_leader_describes_and_a_broker_without_a_replica_refuses(written):
    b1, b2 = written[1].bootstrap_servers, written[2].bootstrap_servers
    # Routed to the leader (broker 1) by the client, asked through broker 2.
    got = describe(b2, [("led", 0), ("solo", 0)])
    assert [s.last_sequence for s in got["led", 0]] == [3]
    assert [s.last_sequence for s in got["solo", 0]] == [1]
    assert got["led", 0][0].producer_id == got["solo", 0][0].producer_id
    assert got["led", 0][0].producer_epoch == 0
    assert describe(b1, [("led", 0)], broker_id=1) == {("led", 0): got["led", 0]}

    on_2 = raw_describe(b2, {"led": [0, 7], "solo": [0]})
    assert on_2["led", 0][0] == ErrorCode.NONE  # a follower answers from its own log
    assert on_2["led", 7] == (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, [])
    assert on_2["solo", 0] == (ErrorCode.NOT_LEADER_OR_FOLLOWER, [])
    with pytest.raises(NotLeaderForPartitionError):
        describe(b1, [("solo", 0)], broker_id=2)


@pytest.mark.skipif(
    importlib.util.find_spec("pybroker.replica.fetcher") is None, reason="followers copy their leaders from issue 15"
)
def test_a_follower_describes_the_producers_it_copied(written):
    b2 = written[2].bootstrap_servers
    leader = describe(b2, [("led", 0)], broker_id=1)["led", 0]
    assert [s.last_sequence for s in leader] == [3]
    follower = wait_for(
        lambda: (got := describe(b2, [("led", 0)], broker_id=2)["led", 0]) == leader and got,
        what="the follower's producer state to be the leader's",
    )
    assert follower == leader
