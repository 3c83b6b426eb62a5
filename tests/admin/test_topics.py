"""``pybroker topics`` and ``pybroker cluster describe`` against one broker."""

from __future__ import annotations

import socket

from kafka import KafkaProducer

from .conftest import cli, unique


def test_create_list_describe_delete(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    topic = unique("topics")
    created = cli("topics", "create", "--topic", topic, "--partitions", "3", "--config", "retention.ms=60000", *bs)
    assert (created.code, created.out) == (0, f"Created topic {topic}.\n"), created.err
    assert topic in run("topics", "list", *bs).out.split()
    listed = {t["name"]: t for t in run("topics", "list", "--json", *bs).json()}
    assert listed[topic]["partitions"] == 3

    (described,) = run("topics", "describe", "--topic", topic, "--json", *bs).json()
    assert described["configs"] == {"retention.ms": "60000"}
    assert [(p["partition"], p["leader"], p["replicas"], p["isr"]) for p in described["partitions"]] == [
        (p, 1, [1], [1]) for p in range(3)
    ]
    text = run("topics", "describe", "--topic", topic, *bs).out
    assert text.splitlines()[0] == f"Topic: {topic}\tPartitionCount: 3\tReplicationFactor: 1\tConfigs: retention.ms=60000"
    assert text.splitlines()[1].split() == ["PARTITION", "LEADER", "REPLICAS", "ISR", "EARLIEST", "LATEST"]

    deleted = run("topics", "delete", "--topic", topic, *bs)
    assert (deleted.code, deleted.out) == (0, f"Deleted topic {topic}.\n")
    gone = run("topics", "describe", "--topic", topic, *bs)
    assert gone.code == 1 and gone.err.startswith("pybroker: UNKNOWN_TOPIC_OR_PARTITION: ")


def test_describe_shows_offsets(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    topic = unique("offsets")
    assert run("topics", "create", "--topic", topic, "--partitions", "2", *bs).code == 0
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    for i in range(5):
        producer.send(topic, b"v%d" % i, partition=1)
    producer.flush()
    producer.close()
    (described,) = run("topics", "describe", "--topic", topic, "--json", *bs).json()
    assert [(p["earliest_offset"], p["latest_offset"]) for p in described["partitions"]] == [(0, 0), (0, 5)]


def test_create_twice_is_one_line_with_kafkas_error(broker):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    topic = unique("twice")
    assert cli("topics", "create", "--topic", topic, *bs).code == 0
    again = cli("topics", "create", "--topic", topic, *bs)
    assert again.code == 1
    assert again.err == f"pybroker: TOPIC_ALREADY_EXISTS: Topic '{topic}' already exists.\n"
    quiet = cli("topics", "create", "--topic", topic, "--if-not-exists", *bs)
    assert (quiet.code, quiet.out, quiet.err) == (0, "", "")


def test_alter_partitions_and_configs(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    topic = unique("alter")
    run("topics", "create", "--topic", topic, "--partitions", "1", "--config", "retention.ms=60000", *bs)
    altered = run("topics", "alter", "--topic", topic, "--partitions", "4", "--config", "segment.bytes=1048576",
                  "--delete-config", "retention.ms", *bs)
    assert altered.code == 0, altered.err
    (described,) = run("topics", "describe", "--topic", topic, "--json", *bs).json()
    assert described["partition_count"] == 4
    assert described["configs"] == {"segment.bytes": "1048576"}
    fewer = run("topics", "alter", "--topic", topic, "--partitions", "2", *bs)
    assert fewer.code == 1 and fewer.err.startswith("pybroker: INVALID_PARTITIONS: ")


def test_refusals(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    bad_config = run("topics", "create", "--topic", unique("bad"), "--config", "no.such.config=1", *bs)
    assert bad_config.code == 1 and bad_config.err.startswith("pybroker: INVALID_CONFIG: ")
    assert run("topics", "delete", "--topic", unique("never"), *bs).err.startswith(
        "pybroker: UNKNOWN_TOPIC_OR_PARTITION: ")
    assert run("topics", "delete", "--topic", unique("never"), "--if-exists", *bs).code == 0
    usage = cli("topics", "create", "--partitions", "3", *bs)  # no --topic
    assert usage.code == 2 and "--topic" in usage.err
    assert cli("topics", "frobnicate").code == 2
    assert cli("topics", "create", "--topic", "x", "--partitions", "three", *bs).code == 2


def test_no_broker_is_one_line(run):
    # A port nothing listens on: reserve one, close it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = run("topics", "list", "--bootstrap-server", f"127.0.0.1:{port}")
    assert down.code == 1
    assert down.err.startswith(f"pybroker: NETWORK_EXCEPTION: cannot connect to 127.0.0.1:{port}")
    assert len(down.err.splitlines()) == 1


def test_cluster_describe_one_broker(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    info = run("cluster", "describe", "--json", *bs).json()
    assert info["brokers"] == [{"id": 1, "host": broker.host, "port": broker.port, "rack": None}]
    assert info["controller"] == 1 and info["cluster_id"]
    assert info["under_replicated_partitions"] == info["offline_partitions"] == []
    text = cli("cluster", "describe", *bs)
    assert text.code == 0
    assert f"1   {broker.host}:{broker.port}" in text.out
    assert "Under-replicated partitions: 0" in text.out
