"""Failover as clients see it: three broker processes and ZooKeeper; a
leader killed with kill -9 while an idempotent acks=all producer writes.

Its ZooKeeper session expires after the session timeout; the controller
then elects the first live in-sync replica, and the producer, retrying,
carries on there. Nothing it was told is written may be missing, nothing
may be there twice, and the order holds. The killed broker, started
again, comes back as a follower and catches up."""

from __future__ import annotations

import time

import pytest

from pybroker.local_cluster import LocalCluster, wait_for

from . import replica_files
from .test_replication_clients import IdempotentWriter, _read_all, create, states, unique, wait_isr

SESSION_MS = 4000


@pytest.fixture(scope="module")
def cluster():
    props = {
        "auto.create.topics.enable": "false",
        "offsets.topic.num.partitions": "3",
        "replica.lag.time.max.ms": "2000",
        "zookeeper.session.timeout.ms": str(SESSION_MS),
    }
    with LocalCluster(3, overrides=props) as c:
        yield c


def test_kill_9_of_the_leader_loses_no_acknowledged_write(cluster):
    topic = unique("killed")
    create(cluster.brokers[0].bootstrap, topic, 1)
    leader_id, epoch, isr = states(cluster, topic)[0]
    assert isr == (1, 2, 3)
    total = 20_000
    writer = IdempotentWriter(cluster.bootstrap_servers, topic, **{"message.timeout.ms": 120_000})
    producer, delivered, errors, send = writer.producer, writer.delivered, writer.errors, writer.send
    send(range(total // 2))
    writer.until_delivered(total // 8)
    assert total // 8 <= len(delivered) < total // 2, len(delivered)
    killed = cluster.broker(leader_id)
    killed.kill()
    started = time.monotonic()
    send(range(total // 2, total))

    def moved():
        now = states(cluster, topic)[0]
        return now if now[0] != leader_id else None

    new_leader, new_epoch, new_isr = wait_for(moved, 30, "a new leader")
    failover = time.monotonic() - started
    assert producer.flush(120) == 0
    assert not errors, errors[:3]
    assert new_epoch > epoch and leader_id not in new_isr
    # The session must expire first: a crash is seen no sooner than that here.
    assert failover < SESSION_MS / 1000 + 5, failover
    print(f"leader {leader_id} killed: broker {new_leader} leads at epoch {new_epoch} after {failover:.2f} s")
    values = _read_all(cluster.broker(new_leader).bootstrap, topic, 0, total)
    assert values == [f"m{i}" for i in range(total)], "a message was lost, duplicated or reordered"

    # Back, the old leader follows, catches up and rejoins the ISR; every
    # replica holds the same batches below the high watermark.
    killed.start()
    wait_isr(cluster, topic, 0, {1, 2, 3}, timeout=60)
    dirs = {b.node_id: b.data_dir for b in cluster.brokers}
    wait_for(lambda: _copies_agree(dirs, topic, total), 60, "the three replicas to agree")


def _copies_agree(dirs, topic: str, end: int) -> bool:
    try:
        batches = replica_files.compare(dirs, topic, 0, end)
    except replica_files.ReplicasDiffer:
        return False  # the restarted one still catching up
    return bool(batches) and batches[-1].last_offset == end - 1
