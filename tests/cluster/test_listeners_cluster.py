"""A three-broker cluster with a PLAINTEXT, an SSL and a SASL_SSL (SCRAM)
listener on each broker: every broker registers its endpoints in
ZooKeeper (Kafka's registration format), the brokers talk PLAINTEXT
between them, and a client is given every broker's address on the
listener it came in on. librdkafka over TLS writes to and reads from
partitions led by all three. A SCRAM credential made through one broker
is stored in ZooKeeper as Kafka stores it and opens every broker."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kazoo.client import KazooClient

from pybroker.local_cluster import LocalCluster, consecutive_free_ports
from pybroker.process import free_port

from ..broker.secured import round_trip
from ..tls_certs import make_certs

WAIT_S = 60


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    base = consecutive_free_ports(3)
    ssl_ports = {n: free_port() for n in (1, 2, 3)}
    scram_ports = {n: free_port() for n in (1, 2, 3)}
    per_broker = {
        n: {"listeners": f"PLAINTEXT://127.0.0.1:{base + n - 1},SSL://127.0.0.1:{ssl_ports[n]},"
                         f"SASL_SSL://127.0.0.1:{scram_ports[n]}"}
        for n in (1, 2, 3)
    }
    props = {
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.server.both),
        "offsets.topic.num.partitions": "3",
        "group.initial.rebalance.delay.ms": "0",
    }
    with LocalCluster(3, base_port=base, overrides=props, broker_overrides=per_broker) as c:
        c.ssl_ports = ssl_ports
        c.scram_ports = scram_ports
        c.ca = certs.ca.path
        yield c


def tls(cluster, node: int = 1) -> dict:
    return {"bootstrap.servers": f"127.0.0.1:{cluster.ssl_ports[node]}", "security.protocol": "SSL",
            "ssl.ca.location": str(cluster.ca)}


def test_both_endpoints_are_registered(cluster):
    zk = KazooClient(hosts=cluster.zookeeper.connect + cluster.chroot)
    zk.start(timeout=WAIT_S)
    try:
        registration = json.loads(zk.get("/brokers/ids/2")[0])
    finally:
        zk.stop()
        zk.close()
    assert registration["endpoints"] == [
        f"PLAINTEXT://127.0.0.1:{cluster.brokers[1].port}",
        f"SSL://127.0.0.1:{cluster.ssl_ports[2]}",
        f"SASL_SSL://127.0.0.1:{cluster.scram_ports[2]}",
    ]
    assert registration["listener_security_protocol_map"] == {
        "PLAINTEXT": "PLAINTEXT", "SSL": "SSL", "SASL_SSL": "SASL_SSL"}
    assert (registration["host"], registration["port"]) == ("127.0.0.1", cluster.brokers[1].port)


def test_clients_get_the_addresses_of_their_listener(cluster):
    over_tls = AdminClient(tls(cluster, 2)).list_topics(timeout=WAIT_S)
    assert {b.id: b.port for b in over_tls.brokers.values()} == cluster.ssl_ports
    plain = AdminClient({"bootstrap.servers": cluster.bootstrap_servers}).list_topics(timeout=WAIT_S)
    assert {b.id: b.port for b in plain.brokers.values()} == {b.node_id: b.port for b in cluster.brokers}


def test_tls_clients_use_every_leader(cluster):
    topic = f"tls-cluster-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(tls(cluster))
    admin.create_topics([NewTopic(topic, 3, 3)])[topic].result(WAIT_S)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        meta = admin.list_topics(topic, timeout=WAIT_S).topics[topic]
        leaders = {p.leader for p in meta.partitions.values()}
        if len(meta.partitions) == 3 and -1 not in leaders:
            break
    assert leaders == {1, 2, 3}
    producer = Producer({**tls(cluster), "acks": "all"})
    for p in range(3):
        producer.produce(topic, f"m{p}".encode(), partition=p)
    assert producer.flush(WAIT_S) == 0
    consumer = Consumer({**tls(cluster, 3), "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        seen = set()
        deadline = time.monotonic() + WAIT_S
        while len(seen) < 3 and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                seen.add(message.value())
        assert seen == {b"m0", b"m1", b"m2"}
    finally:
        consumer.close()


def test_a_scram_credential_made_on_one_broker_opens_the_others(cluster):
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{cluster.brokers[0].port}"})
    alteration = UserScramCredentialUpsertion(
        "alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"alice-secret")
    for future in admin.alter_user_scram_credentials([alteration]).values():
        future.result(WAIT_S)
    zk = KazooClient(hosts=cluster.zookeeper.connect + cluster.chroot)
    zk.start(timeout=WAIT_S)
    try:
        stored = json.loads(zk.get("/config/users/alice")[0])
    finally:
        zk.stop()
        zk.close()
    assert stored["version"] == 1
    assert re.fullmatch(r"salt=[^,]+,stored_key=[^,]+,server_key=[^,]+,iterations=4096",
                        stored["config"]["SCRAM-SHA-512"])
    for node in (2, 3):
        conf = {"bootstrap.servers": f"127.0.0.1:{cluster.scram_ports[node]}", "security.protocol": "SASL_SSL",
                "ssl.ca.location": str(cluster.ca), "sasl.mechanisms": "SCRAM-SHA-512",
                "sasl.username": "alice", "sasl.password": "alice-secret"}
        # The other brokers learn it from the change notification: poll
        # until this one has, as a client retrying its login would.
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                meta = AdminClient({**conf, "socket.timeout.ms": 5000}).list_topics(timeout=5)
                break
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
        assert {b.port for b in meta.brokers.values()} == set(cluster.scram_ports.values())
    round_trip(conf)
