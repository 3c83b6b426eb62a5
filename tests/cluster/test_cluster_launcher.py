"""The launcher itself: LocalCluster, running_cluster and the pytest fixture.

What the other cluster tests lean on: processes that come up formed, come
back on the same port and data, pause and resume, take per-broker
properties, and leave nothing behind (no process, no temporary dir).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from pybroker.local_cluster import LocalCluster, wait_for
from pybroker.process import answers_api_versions
from pybroker.testing import running_cluster

from .processes import listening, pid_alive

FAST = {"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "3"}


def test_running_cluster_gives_dev_defaults_and_leaves_nothing_behind():
    from confluent_kafka.admin import AdminClient, NewTopic

    with running_cluster(2, props=FAST) as cluster:
        pids = [cluster.zookeeper.pid] + [b.pid for b in cluster.brokers]
        ports = [b.port for b in cluster.brokers]
        data_dir = cluster.data_dir
        assert ports[1] == ports[0] + 1
        assert cluster.bootstrap_servers == f"127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
        assert cluster.zookeeper_connect.endswith("/pybroker")
        assert {b.node_id for b in cluster.metadata().brokers} == {1, 2}
        # No replication factor given: the broker's default, min(3, N) = 2 here.
        admin = AdminClient({"bootstrap.servers": cluster.brokers[1].bootstrap})
        future = admin.create_topics([NewTopic("defaults", num_partitions=2)])["defaults"]
        assert future.result(30) is None
        partitions = cluster.metadata(["defaults"]).topics[0].partitions
        assert [sorted(p.replica_nodes) for p in partitions] == [[1, 2], [1, 2]]
    assert [p for p in pids if pid_alive(p)] == []
    assert [p for p in ports if listening(p)] == []
    assert not data_dir.exists()


def test_a_given_data_dir_is_kept_and_racks_reach_metadata(tmp_path):
    racks = {1: "rack-a", 2: "rack-b"}
    overrides = {n: {"broker.rack": r} for n, r in racks.items()}
    with LocalCluster(2, data_dir=tmp_path / "c", overrides=FAST, broker_overrides=overrides) as cluster:
        for broker in cluster.brokers:
            listed = {b.node_id: b.rack for b in broker.metadata().brokers}
            assert listed == racks
    assert (tmp_path / "c" / "broker-1").is_dir() and (tmp_path / "c" / "zookeeper").is_dir()
    assert (tmp_path / "c" / "logs" / "broker-2.log").stat().st_size > 0


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(3, overrides=FAST) as c:
        yield c


def test_a_stopped_broker_comes_back_on_its_port_with_its_data(cluster):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    producer = KafkaProducer(bootstrap_servers=cluster.brokers[0].bootstrap, acks="all")
    sent = producer.send("comes-back", b"kept", partition=0).get(timeout=60)
    producer.close()
    leader = cluster.broker(cluster.metadata(["comes-back"]).topics[0].partitions[0].leader_id)
    port, pid = leader.port, leader.pid

    assert leader.stop() == 0
    assert not listening(port)
    wait_for(lambda: len(cluster.metadata().brokers) == 2, 30, "the others to see it gone")
    leader.start()
    assert (leader.port, leader.pid != pid) == (port, True)
    assert {b.node_id for b in leader.metadata().brokers} == {1, 2, 3}

    consumer = KafkaConsumer(bootstrap_servers=leader.bootstrap, enable_auto_commit=False)
    consumer.assign([TopicPartition("comes-back", 0)])
    consumer.seek_to_beginning()
    got = wait_for(lambda: [r.value for rs in consumer.poll(timeout_ms=500).values() for r in rs], 30, "the record")
    consumer.close()
    assert (sent.offset, got) == (0, [b"kept"])


def test_a_paused_broker_answers_again_once_resumed(cluster):
    broker = cluster.brokers[2]
    broker.pause()
    try:
        assert broker.paused and broker.alive()
        assert not answers_api_versions(broker.bootstrap, timeout=1.0)
        assert broker not in cluster.live_brokers()
    finally:
        broker.resume()
    assert answers_api_versions(broker.bootstrap, timeout=10.0)
    cluster.wait_until_formed(30)


def test_the_pytest_plugin_fixture(kafka_cluster):
    assert len(kafka_cluster.brokers) == 3
    assert {b.node_id for b in kafka_cluster.metadata().brokers} == {1, 2, 3}
    assert kafka_cluster.controller_id() in (1, 2, 3)


def test_cluster_command_refuses_a_bad_property_before_starting_anything():
    out = subprocess.run(
        [sys.executable, "-m", "pybroker", "cluster", "--override", "num.partitions=many"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert out.stdout == "" and out.stderr.count("\n") == 1
    assert out.stderr.startswith("pybroker: configuration error:") and "num.partitions" in out.stderr
