"""Client quotas in a three-broker cluster: a quota set through one broker
is stored in ZooKeeper as Kafka stores it (/config/clients/<sanitized
client-id>, a change notification naming the entity) and enforced by
another broker once the notification reaches it; one written into
ZooKeeper the way Kafka's tools write it is read too."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from kazoo.client import KazooClient

from pybroker.local_cluster import LocalCluster, consecutive_free_ports

from ..broker.test_quotas import QUOTA, describe, entity, listed, produce_rate, set_quota, within

WAIT_S = 60


@pytest.fixture(scope="module")
def cluster():
    base = consecutive_free_ports(3)
    props = {"quota.window.num": "2", "offsets.topic.num.partitions": "3", "group.initial.rebalance.delay.ms": "0"}
    with LocalCluster(3, base_port=base, overrides=props) as c:
        c.ports = {n: base + n - 1 for n in (1, 2, 3)}
        yield c


def bootstrap(cluster, node: int) -> str:
    return f"127.0.0.1:{cluster.ports[node]}"


def zk_client(cluster) -> KazooClient:
    zk = KazooClient(hosts=cluster.zookeeper.connect + cluster.chroot)
    zk.start(timeout=WAIT_S)
    return zk


def described_by(cluster, node: int, *components) -> dict:
    """What ``node`` describes, polled until it lists something (or the deadline)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = listed(describe(bootstrap(cluster, node), *components))
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_quota_set_through_one_broker_is_enforced_by_another(cluster):
    client = "slow client*"  # sanitized in its znode name
    set_quota(bootstrap(cluster, 1), entity(client=client), producer_byte_rate=QUOTA)
    zk = zk_client(cluster)
    try:
        stored = json.loads(zk.get("/config/clients/slow%20client%2A")[0])
        changes = [json.loads(zk.get(f"/config/changes/{c}")[0])
                   for c in sorted(zk.get_children("/config/changes"))]
    finally:
        zk.stop()
        zk.close()
    assert stored == {"version": 1, "config": {"producer_byte_rate": str(QUOTA)}}
    assert {"version": 2, "entity_path": "clients/slow%20client%2A"} in changes
    assert described_by(cluster, 3, ("client-id", 0, client)) == {
        (("client-id", client),): {"producer_byte_rate": float(QUOTA)}}
    # A topic led by broker 2 only: the quota is enforced there.
    topic = f"quota-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster, 1)})
    admin.create_topics([NewTopic(topic, 1, replica_assignment=[[2]])])[topic].result(WAIT_S)
    rate, throttle = produce_rate({"bootstrap.servers": bootstrap(cluster, 2), "client.id": client}, topic=topic)
    assert throttle > 0
    assert within(rate, QUOTA), rate


def test_a_quota_written_into_zookeeper_as_kafka_writes_it(cluster):
    zk = zk_client(cluster)
    try:
        zk.create("/config/users/<default>/clients/app", b'{"version":1,"config":{"consumer_byte_rate":"5000"}}',
                  makepath=True)
        zk.create("/config/changes/config_change_", b'{"version":2,"entity_path":"users/<default>/clients/app"}',
                  sequence=True)
    finally:
        zk.stop()
        zk.close()
    found = described_by(cluster, 2, ("user", 1, None), ("client-id", 0, "app"))
    assert found == {(("user", None), ("client-id", "app")): {"consumer_byte_rate": 5000.0}}
