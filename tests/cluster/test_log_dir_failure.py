"""One failed log dir of a broker that has two, in a cluster.

The victim's first log dir is a small tmpfs (root only; unmounted again at
the end), its second an ordinary directory, and it leads every partition
of the topic, half of them in each dir. Filling the tmpfs makes the next
append there fail: that dir goes offline, the broker carries on with the
other and announces the failure in ZooKeeper
(`/log_dir_event_notification`, as Kafka does); the controller asks it
which partitions its online dirs hold and moves the leadership of the
others to in-sync replicas, as if the broker were dead for those
partitions only. An idempotent acks=all producer writing to every
partition throughout gets no error and loses nothing; the victim still
leads the partitions of its healthy dir."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from pybroker.local_cluster import LocalCluster, wait_for

from .test_disk_failure import tmpfs
from .test_replication_clients import _read_all, states, unique, wait_isr

PARTITIONS = 4
PER_PARTITION = 1500
PAYLOAD = 1000


@pytest.fixture(scope="module")
def failing_dir(tmp_path_factory):
    with tmpfs(tmp_path_factory.mktemp("failing") / "dir") as disk:
        yield disk


@pytest.fixture(scope="module")
def cluster(failing_dir, tmp_path_factory):
    props = {"auto.create.topics.enable": "false", "auto.leader.rebalance.enable": "false"}
    healthy = tmp_path_factory.mktemp("healthy")
    # Broker 3 gets two dirs; it must not be the controller (see below).
    overrides = {3: {"log.dirs": f"{failing_dir.path},{healthy}"}}
    with LocalCluster(3, overrides=props, broker_overrides=overrides) as c:
        yield c


def send_all(producer: Producer, topic: str, rounds: range, errors: list) -> None:
    def report(err, msg):
        if err is not None:
            errors.append(err)

    for i in rounds:
        for p in range(PARTITIONS):
            value = f"{p}-{i}|".ljust(PAYLOAD, "x").encode()
            while True:
                try:
                    producer.produce(topic, value=value, partition=p, on_delivery=report)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)


def test_a_failed_dir_moves_only_its_partitions_leaderships(cluster, failing_dir):
    victim = cluster.broker(3)
    if cluster.controller_id() == victim.node_id:
        # The controller asks itself the same way; this test is about the notification's path.
        victim.stop()
        victim.start()
        wait_for(lambda: cluster.controller_id() not in (-1, victim.node_id), 30, "another controller")
    topic = unique("logdir")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    assignment = [[3, 1, 2] if p % 2 else [3, 2, 1] for p in range(PARTITIONS)]
    new = NewTopic(topic, num_partitions=PARTITIONS, replica_assignment=assignment, config={"min.insync.replicas": "2"})
    assert admin.create_topics([new])[topic].result(30) is None
    for p in range(PARTITIONS):
        wait_isr(cluster, topic, p, {1, 2, 3})
    on_tmpfs = {p for p in range(PARTITIONS) if (failing_dir.path / f"{topic}-{p}").is_dir()}
    assert 0 < len(on_tmpfs) < PARTITIONS, on_tmpfs  # some in each dir
    assert all(leader == 3 for leader, _, _ in states(cluster, topic).values())

    errors: list = []
    producer = Producer(
        {"bootstrap.servers": cluster.bootstrap_servers, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
    )
    send_all(producer, topic, range(PER_PARTITION // 2), errors)
    failing_dir.fill()
    filled = time.monotonic()
    send_all(producer, topic, range(PER_PARTITION // 2, PER_PARTITION), errors)

    def moved():
        now = states(cluster, topic)
        return all((now[p][0] != 3 and 3 not in now[p][2]) == (p in on_tmpfs) for p in range(PARTITIONS))

    wait_for(moved, 60, "the leaderships of the failed dir's partitions to move, and only those")
    took = time.monotonic() - filled
    assert producer.flush(120) == 0
    assert not errors, errors[:3]
    assert victim.alive()
    log = victim.log_text()
    assert "failed" in log and "stopping the broker" not in log
    controller_log = cluster.broker(cluster.controller_id()).log_text()
    assert "Replicas of broker 3 in failed log dirs" in controller_log
    now = states(cluster, topic)
    for p in range(PARTITIONS):
        values = _read_all(cluster.broker(now[p][0]).bootstrap, topic, p, PER_PARTITION)
        assert [v.split("|")[0] for v in values] == [f"{p}-{i}" for i in range(PER_PARTITION)], p
    print(f"partitions {sorted(on_tmpfs)} moved off broker 3 within {took:.1f} s of its dir filling")
