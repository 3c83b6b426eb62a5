"""``min.insync.replicas`` as Kafka applies it: acks=all to a partition with
fewer in-sync replicas is refused NOT_ENOUGH_REPLICAS and nothing is
written; acks=1 is not affected. A single node is one replica, so a topic
that asks for two refuses acks=all here, as it would on a one-broker Kafka."""

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import NotEnoughReplicasError

from pybroker.testing import running_broker

TIMEOUT = 30


@pytest.fixture(scope="module")
def bootstrap():
    with running_broker() as running:
        admin = KafkaAdminClient(bootstrap_servers=running.bootstrap_servers)
        admin.create_topics(
            [
                NewTopic("guarded", 1, 1, topic_configs={"min.insync.replicas": "2"}),
                NewTopic("guarded-acks1", 1, 1, topic_configs={"min.insync.replicas": "2"}),
                NewTopic("plain", 1, 1),
            ]
        )
        admin.close()
        yield running.bootstrap_servers


def end_offset(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        return consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


def test_acks_all_below_min_insync_is_refused_and_writes_nothing(bootstrap):
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=0)
    try:
        with pytest.raises(NotEnoughReplicasError):
            producer.send("guarded", b"refused").get(TIMEOUT)
        assert producer.send("plain", b"fine").get(TIMEOUT).offset == 0
    finally:
        producer.close()
    assert end_offset(bootstrap, "guarded") == 0


def test_acks_one_ignores_min_insync(bootstrap):
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, retries=0)
    try:
        metadata = producer.send("guarded-acks1", b"leader only").get(TIMEOUT)
    finally:
        producer.close()
    assert metadata.offset == 0
    assert end_offset(bootstrap, "guarded-acks1") == 1
