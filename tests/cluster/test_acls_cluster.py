"""ACLs in a three-broker cluster with the authorizer on: the brokers talk
PLAINTEXT between them as User:ANONYMOUS, a super user (what Kafka asks
of a PLAINTEXT inter-broker listener), and clients log in with
SASL/PLAIN. An ACL made through one broker is stored in ZooKeeper as
Kafka stores it and enforced by the others once its change notification
reaches them; one written into ZooKeeper the way a Kafka broker writes it
is enforced too; and the cluster keeps replicating."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from kazoo.client import KazooClient

from pybroker.local_cluster import LocalCluster, consecutive_free_ports
from pybroker.process import free_port

WAIT_S = 60
JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required'
        ' user_admin="admin-secret" user_alice="alice-secret";')


@pytest.fixture(scope="module")
def cluster():
    base = consecutive_free_ports(3)
    sasl_ports = {n: free_port() for n in (1, 2, 3)}
    per_broker = {
        n: {"listeners": f"PLAINTEXT://127.0.0.1:{base + n - 1},SASL_PLAINTEXT://127.0.0.1:{sasl_ports[n]}"}
        for n in (1, 2, 3)
    }
    props = {
        "sasl.enabled.mechanisms": "PLAIN",
        "sasl.jaas.config": JAAS,
        "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
        "super.users": "User:admin;User:ANONYMOUS",
        "offsets.topic.num.partitions": "3",
        "group.initial.rebalance.delay.ms": "0",
    }
    with LocalCluster(3, base_port=base, overrides=props, broker_overrides=per_broker) as c:
        c.sasl_ports = sasl_ports
        yield c


def conf(cluster, node: int, user: str) -> dict:
    return {"bootstrap.servers": f"127.0.0.1:{cluster.sasl_ports[node]}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "PLAIN", "sasl.username": user, "sasl.password": f"{user}-secret"}


def zk_client(cluster) -> KazooClient:
    zk = KazooClient(hosts=cluster.zookeeper.connect + cluster.chroot)
    zk.start(timeout=WAIT_S)
    return zk


def produce_error(config: dict, topic: str, partitions=(0,)):
    """The first delivery error code of one message per partition (None: all delivered)."""
    errors = []
    producer = Producer({**config, "acks": "all", "message.timeout.ms": 15000})
    for p in partitions:
        producer.produce(topic, b"v", partition=p, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(WAIT_S)
    assert len(errors) == len(partitions)
    codes = [e.code() for e in errors if e is not None]
    return codes[0] if codes else None


def until(condition, what: str):
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"


def make_topic(cluster, name: str) -> None:
    admin = AdminClient(conf(cluster, 1, "admin"))
    admin.create_topics([NewTopic(name, 3, 3)])[name].result(WAIT_S)

    def led_everywhere():
        meta = admin.list_topics(name, timeout=WAIT_S).topics[name]
        return len(meta.partitions) == 3 and all(p.leader >= 0 for p in meta.partitions.values())

    until(led_everywhere, f"leaders of {name}")


def test_an_acl_made_through_one_broker_is_enforced_by_the_others(cluster):
    topic = f"acl-{uuid.uuid4().hex[:8]}"
    make_topic(cluster, topic)
    assert produce_error(conf(cluster, 3, "alice"), topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    admin = AdminClient(conf(cluster, 1, "admin"))
    binding = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice", "*",
                         AclOperation.WRITE, AclPermissionType.ALLOW)
    admin.create_acls([binding])[binding].result(WAIT_S)
    zk = zk_client(cluster)
    try:
        stored = json.loads(zk.get(f"/kafka-acl/Topic/{topic}")[0])
        changes = [zk.get(f"/kafka-acl-changes/{c}")[0] for c in zk.get_children("/kafka-acl-changes")]
    finally:
        zk.stop()
        zk.close()
    assert stored == {"version": 1, "acls": [
        {"principal": "User:alice", "permissionType": "Allow", "operation": "Write", "host": "*"}]}
    assert f"TOPIC:{topic}".encode() in changes
    # Every partition (led by all three brokers) takes alice's records, with
    # acks=all: the followers keep copying with the authorizer on.
    until(lambda: produce_error(conf(cluster, 3, "alice"), topic, (0, 1, 2)) is None, "broker 3 to allow alice")
    meta = AdminClient(conf(cluster, 2, "admin")).list_topics(topic, timeout=WAIT_S).topics[topic]
    assert {p.leader for p in meta.partitions.values()} == {1, 2, 3}
    assert all(len(p.isrs) == 3 for p in meta.partitions.values())


def test_prefixed_acls_deleted_through_another_broker(cluster):
    prefix = f"pre-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.events"
    make_topic(cluster, topic)
    admin1, admin2 = AdminClient(conf(cluster, 1, "admin")), AdminClient(conf(cluster, 2, "admin"))
    binding = AclBinding(ResourceType.TOPIC, prefix, ResourcePatternType.PREFIXED, "User:alice", "*",
                         AclOperation.ALL, AclPermissionType.ALLOW)
    admin1.create_acls([binding])[binding].result(WAIT_S)
    zk = zk_client(cluster)
    try:
        assert zk.exists(f"/kafka-acl-extended/prefixed/Topic/{prefix}")
    finally:
        zk.stop()
        zk.close()
    until(lambda: produce_error(conf(cluster, 3, "alice"), topic) is None, "the prefixed ACL on broker 3")
    # Broker 2 must have it before it can delete it.
    mine = AclBindingFilter(ResourceType.TOPIC, prefix, ResourcePatternType.PREFIXED, None, None, AclOperation.ANY,
                            AclPermissionType.ANY)
    until(lambda: admin2.describe_acls(mine).result(WAIT_S), "broker 2 to know the ACL")
    deleted = admin2.delete_acls([mine])[mine].result(WAIT_S)
    assert [b.name for b in deleted] == [prefix]
    until(lambda: produce_error(conf(cluster, 3, "alice"), topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED,
          "broker 3 to forget the ACL")


def test_an_acl_written_as_kafka_writes_it_is_enforced(cluster):
    topic = f"kafka-written-{uuid.uuid4().hex[:8]}"
    make_topic(cluster, topic)
    zk = zk_client(cluster)
    try:
        zk.create(f"/kafka-acl/Topic/{topic}", json.dumps({"version": 1, "acls": [
            {"host": "*", "permissionType": "Allow", "operation": "Write", "principal": "User:alice"}]}).encode())
        zk.create("/kafka-acl-changes/acl_changes_", f"Topic:{topic}".encode(), sequence=True)
    finally:
        zk.stop()
        zk.close()
    for node in (1, 2, 3):
        until(lambda node=node: produce_error(conf(cluster, node, "alice"), topic) is None, f"broker {node}")


def test_a_name_no_znode_can_have_is_refused(cluster):
    admin = AdminClient(conf(cluster, 2, "admin"))
    binding = AclBinding(ResourceType.GROUP, "team/a", ResourcePatternType.LITERAL, "User:alice", "*",
                         AclOperation.READ, AclPermissionType.ALLOW)
    with pytest.raises(KafkaException) as refused:
        admin.create_acls([binding])[binding].result(WAIT_S)
    assert refused.value.args[0].code() == KafkaError.INVALID_REQUEST
