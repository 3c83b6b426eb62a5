"""A topic written into ZooKeeper by hand, in Kafka's format, is picked up
by a running broker through its watches: Metadata shows it, its configs
apply, and the broker its states name as leader serves it to a real
client; a change of the state (a new leader epoch) reaches the broker."""

import json
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pybroker.cluster import zk_configs, znodes
from pybroker.protocol.messages.describe_configs_request import DescribeConfigsRequest, DescribeConfigsResource

from .broker_support import cluster_broker, metadata, partitions_view, request, wait_for

TOPIC_ID = uuid.UUID("7c9ef1d2-6b4f-4d7e-a1c3-2f6a8e0b9d41")


def write_topic_by_hand(zk_admin, name: str, leader: int, epoch: int) -> None:
    """What Kafka's AdminZkClient and controller would have written, as
    literal JSON; the topic and its states in one transaction, so that the
    controller finds the states there with the topic."""
    zk_admin.create(f"/config/topics/{name}", b'{"version":1,"config":{"retention.ms":"86400000"}}', makepath=True)
    topic = {
        "partitions": {"1": [leader], "0": [leader]},
        "topic_id": znodes.topic_id_text(TOPIC_ID),
        "adding_replicas": {},
        "removing_replicas": {},
        "version": 3,
    }
    transaction = zk_admin.transaction()
    transaction.create(f"/brokers/topics/{name}", json.dumps(topic).encode())
    transaction.create(f"/brokers/topics/{name}/partitions")
    for p in (0, 1):
        state = {"controller_epoch": 1, "leader": leader, "version": 1, "leader_epoch": epoch, "isr": [leader]}
        transaction.create(f"/brokers/topics/{name}/partitions/{p}")
        transaction.create(f"/brokers/topics/{name}/partitions/{p}/state", json.dumps(state).encode())
    assert not any(isinstance(r, Exception) for r in transaction.commit())


def test_a_topic_written_by_hand_is_served(zk_connect, zk_admin, tmp_path):
    with cluster_broker(zk_connect, 1, tmp_path) as broker:
        bootstrap = broker.bootstrap_servers
        write_topic_by_hand(zk_admin, "handmade", leader=1, epoch=3)

        def seen():
            view = partitions_view(metadata(bootstrap, ["handmade"]), "handmade")
            return view if len(view) == 2 and all(p[1] == 1 for p in view) else None

        view = wait_for(seen, what="the topic in Metadata")
        assert view == [(0, 1, 3, [1], [1], [], 0), (1, 1, 3, [1], [1], [], 0)]
        response = metadata(bootstrap, ["handmade"])
        assert response.topics[0].topic_id == TOPIC_ID
        assert response.controller_id in (-1, 1)

        configs = request(
            bootstrap,
            DescribeConfigsRequest(
                resources=[
                    DescribeConfigsResource(
                        resource_type=2, resource_name="handmade", configuration_keys=["retention.ms"]
                    )
                ]
            ),
            4,
        )
        assert [(c.name, c.value) for c in configs.results[0].configs] == [("retention.ms", "86400000")]

        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        for i in range(10):
            producer.send("handmade", value=f"v{i}".encode(), partition=i % 2)
        producer.flush(30)
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=10000)
        consumer.assign([TopicPartition("handmade", 0), TopicPartition("handmade", 1)])
        got = set()
        for message in consumer:
            got.add(message.value)
            if len(got) == 10:
                break
        consumer.close()
        assert got == {f"v{i}".encode() for i in range(10)}

        # A newer state (as a controller electing again would write) is applied.
        state = b'{"version":1,"leader":1,"leader_epoch":4,"controller_epoch":1,"isr":[1]}'
        zk_admin.set("/brokers/topics/handmade/partitions/0/state", state)
        wait_for(lambda: partitions_view(metadata(bootstrap, ["handmade"]), "handmade")[0][2] == 4, what="epoch 4")
        part = broker.broker.replicas.partition("handmade", 0)
        assert part.leader_epoch == 4


def test_a_config_change_written_by_hand_is_applied_and_purged_when_old(zk_connect, zk_admin, tmp_path, monkeypatch):
    with cluster_broker(zk_connect, 1, tmp_path) as broker:
        bootstrap = broker.bootstrap_servers
        write_topic_by_hand(zk_admin, "tuned", leader=1, epoch=0)
        wait_for(lambda: broker.broker.replicas.partition("tuned", 1), what="the partitions hosted")
        # What Kafka's kafka-configs.sh --zookeeper (AdminZkClient.changeTopicConfig) writes.
        zk_admin.set("/config/topics/tuned", b'{"version":1,"config":{"retention.ms":"5000"}}')
        monkeypatch.setattr(zk_configs, "CONFIG_CHANGE_EXPIRATION_MS", 0)  # every notice is old at once
        zk_admin.create("/config/changes/config_change_", b'{"version":2,"entity_path":"topics/tuned"}', sequence=True)
        wait_for(lambda: broker.broker.replicas.partition("tuned", 1).log.config.retention_ms == 5000)
        resource = DescribeConfigsResource(resource_type=2, resource_name="tuned", configuration_keys=["retention.ms"])
        configs = request(bootstrap, DescribeConfigsRequest(resources=[resource]), 4).results[0].configs
        assert [(c.name, c.value, c.config_source) for c in configs] == [("retention.ms", "5000", 1)]
        wait_for(lambda: zk_admin.get_children("/config/changes") == [], what="the notice purged")
