"""A three-broker cluster whose brokers talk to each other over a
SASL_SSL listener of their own (INTERNAL, PLAIN, certificates checked
both ways with host names), clients over PLAINTEXT: followers copy their
leaders and stay in sync, acks=all writes are acknowledged, and a
transaction's markers reach partitions led by the other brokers, all over
the authenticated, encrypted links. Config problems of the inter-broker
listener stop the start with one line each."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from pybroker.config import BrokerConfig, ConfigError
from pybroker.local_cluster import LocalCluster, consecutive_free_ports
from pybroker.process import free_port

WAIT_S = 60
BROKER_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" '
               'password="broker-secret" user_broker="broker-secret";')


def internal_props(certs) -> dict:
    return {
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:SASL_SSL",
        "inter.broker.listener.name": "INTERNAL",
        "sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.internal.plain.sasl.jaas.config": BROKER_JAAS,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.server.both),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca.path),
    }


@pytest.fixture(scope="module")
def cluster(certs):
    base = consecutive_free_ports(3)
    per_broker = {
        n: {"listeners": f"PLAINTEXT://127.0.0.1:{base + n - 1},INTERNAL://127.0.0.1:{free_port()}"}
        for n in (1, 2, 3)
    }
    props = {**internal_props(certs), "offsets.topic.num.partitions": "3",
             "transaction.state.log.num.partitions": "3", "group.initial.rebalance.delay.ms": "0"}
    with LocalCluster(3, base_port=base, overrides=props, broker_overrides=per_broker) as c:
        yield c


def test_replication_and_markers_go_over_the_secured_inter_broker_listener(cluster):
    topic = f"internal-{uuid.uuid4().hex[:8]}"
    conf = {"bootstrap.servers": cluster.bootstrap_servers}
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(topic, 3, 3)])[topic].result(WAIT_S)
    deadline = time.monotonic() + WAIT_S
    while True:
        parts = admin.list_topics(topic, timeout=WAIT_S).topics[topic].partitions
        ready = len(parts) == 3 and all(p.leader > 0 and len(p.isrs) == 3 for p in parts.values())
        if ready or time.monotonic() > deadline:
            break
    assert {p.leader for p in parts.values()} == {1, 2, 3}
    producer = Producer({**conf, "acks": "all"})
    for i in range(30):
        producer.produce(topic, f"m{i}".encode(), partition=i % 3)
    assert producer.flush(WAIT_S) == 0
    txn = Producer({**conf, "transactional.id": f"tx-{topic}"})
    txn.init_transactions(WAIT_S)
    txn.begin_transaction()
    for p in range(3):
        txn.produce(topic, f"t{p}".encode(), partition=p)
    txn.commit_transaction(WAIT_S)
    consumer = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    try:
        consumer.subscribe([topic])
        seen = set()
        deadline = time.monotonic() + WAIT_S
        while len(seen) < 33 and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                seen.add(message.value())
        assert seen == {f"m{i}".encode() for i in range(30)} | {b"t0", b"t1", b"t2"}
    finally:
        consumer.close()
    # Every follower is still in sync: it fetched over SASL_SSL all along.
    parts = admin.list_topics(topic, timeout=WAIT_S).topics[topic].partitions
    assert all(len(p.isrs) == 3 for p in parts.values())
    logs = "".join(b.log_path.read_text() for b in cluster.brokers)
    assert "refused this broker" not in logs and "TLS handshake with" not in logs


@pytest.mark.parametrize(("more", "message"), [
    ({"sasl.mechanism.inter.broker.protocol": "GSSAPI"}, "GSSAPI is not enabled on the inter-broker listener"),
    ({"listener.name.internal.plain.sasl.jaas.config":
      'org.apache.kafka.common.security.plain.PlainLoginModule required user_broker="x";'},
     'needs username="..." and password="..."'),
    ({"ssl.truststore.location": ""}, "the brokers check each other's certificates against a truststore"),
])
def test_inter_broker_security_problems_stop_the_start(certs, more, message):
    props = {**internal_props(certs), "listeners": "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0", **more}
    with pytest.raises(ConfigError, match=message):
        BrokerConfig(props)
