"""A consumer group outlives its coordinator's broker.

The group coordinator runs on the leader of the group's
`__consumer_offsets` partition (one partition here, replicated on all
three brokers). Killing that broker with kill -9 moves the partition's
leadership, and the coordinator with it: the new leader loads the
group's offsets from its replica of the log. A confluent-kafka consumer
committing synchronously as it goes must carry on to the end of the
topic, and no committed offset may ever read lower than the last commit
the old coordinator acknowledged (commits are written with acks=all)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from pybroker.local_cluster import LocalCluster, wait_for

from .test_replication_clients import _coordinator, create, unique, wait_isr

PARTITIONS = 3
PER_PARTITION = 100


@pytest.fixture(scope="module")
def cluster():
    props = {
        "auto.create.topics.enable": "false",
        "offsets.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        "zookeeper.session.timeout.ms": "10000",
    }
    with LocalCluster(3, overrides=props) as c:
        yield c


def produce(bootstrap: str, topic: str) -> set[str]:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    values = set()
    for p in range(PARTITIONS):
        for i in range(PER_PARTITION):
            value = f"{p}-{i}"
            producer.produce(topic, value.encode(), partition=p)
            values.add(value)
    assert producer.flush(30) == 0
    return values


def committed(consumer: Consumer, topic: str) -> dict[int, int] | None:
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=5)
    except KafkaException:
        return None  # the coordinator is moving
    if any(tp.error is not None for tp in tps):
        return None
    return {tp.partition: tp.offset for tp in tps}


def test_a_group_keeps_going_when_its_coordinator_is_killed(cluster):
    topic, group = unique("coord"), unique("group")
    create(cluster.brokers[0].bootstrap, topic, PARTITIONS)
    wait_for(lambda: _coordinator(cluster.brokers[0].bootstrap, group)[0] == 0, 30, "the offsets topic")
    wait_isr(cluster, "__consumer_offsets", 0, {1, 2, 3}, timeout=60)
    values = produce(cluster.bootstrap_servers, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
        }
    )
    consumer.subscribe([topic])
    seen: set[str] = set()
    acknowledged: dict[int, int] = {}  # the highest commit acknowledged per partition
    consumed = failed_commits = 0
    killed = None
    old_coordinator = _coordinator(cluster.brokers[0].bootstrap, group)[1]

    def commit() -> None:
        nonlocal failed_commits
        try:
            for tp in consumer.commit(asynchronous=False):
                if tp.error is None and tp.offset >= 0:
                    acknowledged[tp.partition] = max(acknowledged.get(tp.partition, 0), tp.offset)
        except KafkaException:
            failed_commits += 1  # not acknowledged: it proves nothing either way

    deadline = time.monotonic() + 120
    try:
        while len(seen) < len(values) and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                seen.add(msg.value().decode())
                consumed += 1
            if msg is None or consumed % 10 == 0:
                commit()
            if killed is None and len(seen) >= len(values) // 3 and acknowledged:
                before_kill = dict(acknowledged)
                killed = cluster.broker(old_coordinator)
                killed.kill()
                # What the next coordinator answers first holds every acknowledged commit.
                first = wait_for(lambda: committed(consumer, topic), 30, "the committed offsets after the kill")
                assert all(first.get(p, -1) >= offset for p, offset in before_kill.items()), (first, before_kill)
        assert killed is not None
        assert seen == values, f"{len(values) - len(seen)} values never consumed"
        assert _coordinator(cluster.live_brokers()[0].bootstrap, group)[1] not in (-1, old_coordinator)
        done = {p: PER_PARTITION for p in range(PARTITIONS)}

        def all_committed():
            commit()
            return acknowledged == done

        wait_for(all_committed, 30, "the final commit")
        now = wait_for(lambda: committed(consumer, topic), 30, "the committed offsets")
        assert now == done, now
    finally:
        consumer.close()
    print(f"coordinator {old_coordinator} killed; {failed_commits} commits failed meanwhile")
