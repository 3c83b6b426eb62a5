"""A cluster whose brokers do not all have the client's listener: broker
2 has no SSL listener. A client over SSL is not given broker 2, and a
partition led by broker 2 is LISTENER_NOT_FOUND with no leader, as Kafka's
MetadataCache answers (LEADER_NOT_AVAILABLE before Metadata v6); over
PLAINTEXT every leader is there."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from pybroker.local_cluster import LocalCluster, consecutive_free_ports
from pybroker.process import free_port
from pybroker.protocol.error_codes import ErrorCode

from ..tls_certs import make_certs

WAIT_S = 60


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    base = consecutive_free_ports(2)
    ssl_port = free_port()
    per_broker = {1: {"listeners": f"PLAINTEXT://127.0.0.1:{base},SSL://127.0.0.1:{ssl_port}"},
                  2: {"listeners": f"PLAINTEXT://127.0.0.1:{base + 1}"}}
    props = {"ssl.keystore.type": "PEM", "ssl.keystore.location": str(certs.server.both),
             "offsets.topic.num.partitions": "1"}
    with LocalCluster(2, base_port=base, overrides=props, broker_overrides=per_broker) as c:
        c.ssl_port, c.ca = ssl_port, certs.ca.path
        yield c


def test_a_leader_without_the_clients_listener_is_listener_not_found(cluster):
    topic = f"listeners-{uuid.uuid4().hex[:8]}"
    plain = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    plain.create_topics([NewTopic(topic, num_partitions=2, replica_assignment=[[1], [2]])])[topic].result(WAIT_S)
    deadline = time.monotonic() + WAIT_S
    while True:
        partitions = plain.list_topics(topic, timeout=WAIT_S).topics[topic].partitions
        if {p.id: p.leader for p in partitions.values()} == {0: 1, 1: 2} or time.monotonic() > deadline:
            break
    assert {p.id: p.leader for p in partitions.values()} == {0: 1, 1: 2}
    over_tls = AdminClient({"bootstrap.servers": f"127.0.0.1:{cluster.ssl_port}", "security.protocol": "SSL",
                            "ssl.ca.location": str(cluster.ca)})
    meta = over_tls.list_topics(topic, timeout=WAIT_S)
    assert [b.id for b in meta.brokers.values()] == [1]
    partitions = meta.topics[topic].partitions
    assert (partitions[0].leader, partitions[0].error) == (1, None)
    assert partitions[1].leader == -1 and partitions[1].error.code() == ErrorCode.LISTENER_NOT_FOUND
