"""The cluster's gauges on a LocalCluster with an endpoint per broker: a
broker killed shows on the survivors as under-replicated partitions and ISR
shrinks, and on the controller as offline partitions (those it held alone)."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from pybroker.local_cluster import LocalCluster
from pybroker.process import free_port

from .scrape import poll, scrape

TIMEOUT = 60
PROPS = {
    "zookeeper.session.timeout.ms": "4000",
    "replica.lag.time.max.ms": "4000",
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "1",
}


@pytest.fixture
def cluster():
    ports = {node: free_port() for node in (1, 2, 3)}
    per_broker = {node: {"metrics.listener": f"http://127.0.0.1:{port}"} for node, port in ports.items()}
    with LocalCluster(3, overrides=PROPS, broker_overrides=per_broker) as c:
        c.metrics_urls = {node: f"http://127.0.0.1:{port}/metrics" for node, port in ports.items()}
        yield c


def total(cluster, nodes, name: str) -> float:
    return sum(scrape(cluster.metrics_urls[n]).value(name) or 0 for n in nodes)


def test_a_killed_broker_shows_as_under_replicated_offline_and_shrunk(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    victim = next(n for n in (1, 2, 3) if n != cluster.controller_id())
    survivors = [n for n in (1, 2, 3) if n != victim]
    topics = [NewTopic("replicated", 3, 3), NewTopic("alone", 1, replica_assignment=[[victim]])]
    for future in admin.create_topics(topics).values():
        future.result(TIMEOUT)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all"})
    for i in range(300):
        producer.produce("replicated", value=b"v%d" % i, partition=i % 3)
    assert producer.flush(TIMEOUT) == 0
    everyone = (1, 2, 3)
    poll(lambda: total(cluster, everyone, "kafka_server_replicamanager_leadercount") >= 4, TIMEOUT, "every leader")
    assert total(cluster, everyone, "kafka_server_replicamanager_underreplicatedpartitions") == 0
    assert total(cluster, everyone, "kafka_controller_kafkacontroller_offlinepartitionscount") == 0
    assert total(cluster, everyone, "kafka_controller_kafkacontroller_activecontrollercount") == 1
    shrinks = total(cluster, survivors, "kafka_server_replicamanager_isrshrinks_total")
    # Every broker holds a replica of each partition of "replicated": the log sizes agree.
    sizes = {
        n: scrape(cluster.metrics_urls[n]).value("kafka_log_log_size", topic="replicated", partition="0")
        for n in everyone
    }
    assert len(set(sizes.values())) == 1 and sizes[1] > 0, sizes

    cluster.broker(victim).kill()
    poll(
        lambda: total(cluster, survivors, "kafka_server_replicamanager_underreplicatedpartitions") > 0,
        TIMEOUT,
        f"under-replicated partitions on brokers {survivors} once broker {victim} is dead",
    )
    poll(
        lambda: total(cluster, survivors, "kafka_server_replicamanager_isrshrinks_total") > shrinks,
        TIMEOUT,
        "an ISR shrink counted",
    )
    poll(
        lambda: total(cluster, survivors, "kafka_controller_kafkacontroller_offlinepartitionscount") == 1,
        TIMEOUT,
        "the partition only the dead broker held counted offline by the controller",
    )
