"""The automatic preferred-leader rebalance (auto.leader.rebalance.enable).

A broker that was killed comes back as a follower of everything; its
leaderships went to other replicas and no operator asks for them back.
The controller's periodic check (every second here) finds the broker
leading none of the partitions it is the preferred replica of and elects
it again once it is back in sync."""

from __future__ import annotations

import pytest

from pybroker.local_cluster import LocalCluster, wait_for

from .test_replication_clients import create, states, unique, wait_isr


@pytest.fixture(scope="module")
def cluster():
    props = {
        "auto.create.topics.enable": "false",
        "offsets.topic.num.partitions": "1",
        "leader.imbalance.check.interval.seconds": "1",
    }
    with LocalCluster(3, overrides=props) as c:
        yield c


def preferred_leading(cluster: LocalCluster, topic: str, node_id: int) -> list[bool]:
    """For each partition whose first replica is ``node_id``: whether it leads."""
    answer = cluster.metadata([topic])
    return [p.leader_id == node_id for t in answer.topics for p in t.partitions if p.replica_nodes[0] == node_id]


def test_a_restarted_broker_gets_its_leaderships_back(cluster):
    topic = unique("rebalance")
    create(cluster.brokers[0].bootstrap, topic, 6)  # two preferred leaderships per broker
    for p in range(6):
        wait_isr(cluster, topic, p, {1, 2, 3})
    controller_id = cluster.controller_id()
    victim = next(b for b in cluster.brokers if b.node_id != controller_id)
    assert preferred_leading(cluster, topic, victim.node_id) == [True, True]

    victim.kill()
    wait_for(lambda: not any(preferred_leading(cluster, topic, victim.node_id)), 30, "its leaderships to move away")
    victim.start()
    for p in range(6):
        wait_isr(cluster, topic, p, {1, 2, 3}, timeout=60)
    wait_for(lambda: all(preferred_leading(cluster, topic, victim.node_id)), 30, "its preferred leaderships back")
    # Moved back by the rebalance, each with a new leader epoch.
    assert all(epoch >= 2 for leader, epoch, _ in states(cluster, topic).values() if leader == victim.node_id)
    logs = cluster.broker(cluster.controller_id()).log_text()
    assert "Auto leader rebalance moved the leadership" in logs
