"""The admin CLI against a three-broker cluster (ZooKeeper, replication
factor 3): describe shows leaders, replicas and ISR across brokers,
produce and consume reach every leader, a group's requests reach its
coordinator, and ``cluster describe`` names the brokers, the controller and
the under-replicated partitions once a broker is gone."""

from __future__ import annotations

import pytest

from pybroker.admin.client import Client
from pybroker.admin.offsets import LATEST, list_offsets
from pybroker.local_cluster import LocalCluster, wait_for

from .conftest import cli, unique


@pytest.fixture(scope="module")
def cluster():
    props = {
        "auto.create.topics.enable": "false",
        "offsets.topic.num.partitions": "3",
        "group.initial.rebalance.delay.ms": "0",
        "replica.lag.time.max.ms": "2000",
        "zookeeper.session.timeout.ms": "4000",
    }
    with LocalCluster(3, overrides=props) as c:
        yield c


def _describe(run, bs, topic):
    result = run("topics", "describe", "--topic", topic, "--json", *bs)
    assert result.code == 0, result.err
    return result.json()[0]


def _describe_when_known(run, bs, topic):
    """The description, or None while a just-created topic's leaders do not
    know it yet (a retriable error, as Kafka's tools see it too)."""
    result = run("topics", "describe", "--topic", topic, "--json", *bs)
    if result.code and ("UNKNOWN_TOPIC_OR_PARTITION" in result.err or "LEADER_NOT_AVAILABLE" in result.err):
        return None
    assert result.code == 0, result.err
    return result.json()[0]


def test_topics_produce_consume_across_leaders(cluster, run):
    bs = ("--bootstrap-server", cluster.bootstrap_servers)
    topic = unique("spread")
    created = run("topics", "create", "--topic", topic, "--partitions", "3", "--replication-factor", "3", *bs)
    assert created.code == 0, created.err

    def fully_replicated():
        t = _describe_when_known(run, bs, topic)
        return t if t and all(len(p["isr"]) == 3 and p["leader"] >= 0 for p in t["partitions"]) else None

    described = wait_for(fully_replicated, 30, "every partition's ISR to hold three brokers")
    assert described["replication_factor"] == 3
    assert {p["leader"] for p in described["partitions"]} == {b.node_id for b in cluster.brokers}
    for p in described["partitions"]:
        assert sorted(p["replicas"]) == sorted(p["isr"]) == sorted(b.node_id for b in cluster.brokers)
    text = run("topics", "describe", "--topic", topic, *bs).out
    assert "ReplicationFactor: 3" in text

    lines = "".join(f"k{i}\tv{i}\n" for i in range(60))
    produced = cli("produce", "--topic", topic, "--property", "parse.key=true", *bs, input=lines)
    assert produced.code == 0, produced.err
    counts = [p["latest_offset"] for p in _describe(run, bs, topic)["partitions"]]
    assert sum(counts) == 60 and all(counts), counts  # every leader took some

    consumed = run("consume", "--topic", topic, "--from-beginning", "--max-messages", "60",
                   "--property", "print.key=true", *bs)
    assert sorted(consumed.out.splitlines()) == sorted(f"k{i}\tv{i}" for i in range(60))

    group = unique("cluster-group")
    as_member = run("consume", "--topic", topic, "--group", group, "--from-beginning", "--max-messages", "60", *bs)
    assert as_member.code == 0, as_member.err
    (report,) = run("groups", "describe", "--group", group, "--json", *bs).json()
    assert sum(o["current_offset"] for o in report["offsets"]) == 60
    assert {o["lag"] for o in report["offsets"]} == {0}


def test_offsets_asked_of_a_broker_that_does_not_lead_come_from_the_leader(cluster, run):
    # A just-created partition's leader may not know yet that it leads, and
    # a leader may move: such a broker answers ListOffsets with
    # NOT_LEADER_OR_FOLLOWER, which Kafka's AdminClient retries against the
    # leader in fresh metadata. `topics describe` failed on it at once.
    bs = ("--bootstrap-server", cluster.bootstrap_servers)
    topic = unique("asked-elsewhere")
    created = run("topics", "create", "--topic", topic, "--partitions", "1", "--replication-factor", "3", *bs)
    assert created.code == 0, created.err
    produced = cli("produce", "--topic", topic, *bs, input="".join(f"v{i}\n" for i in range(5)))
    assert produced.code == 0, produced.err
    with Client(cluster.bootstrap_servers) as client:
        leader = client.partitions(topic)[0]
        wait_for(lambda: list_offsets(client, {(topic, 0): leader}, LATEST)[topic, 0] == 5, 30,
                 "the high watermark to cover the five records")
        follower = next(b.node_id for b in cluster.brokers if b.node_id != leader)
        assert list_offsets(client, {(topic, 0): follower}, LATEST) == {(topic, 0): 5}


def test_cluster_describe_and_under_replicated(cluster, run):
    bs = ("--bootstrap-server", cluster.bootstrap_servers)
    info = run("cluster", "describe", "--json", *bs).json()
    assert [(b["id"], f"{b['host']}:{b['port']}") for b in info["brokers"]] == [
        (b.node_id, b.bootstrap) for b in cluster.brokers]
    assert info["controller"] == cluster.controller_id()
    assert info["under_replicated_partitions"] == info["offline_partitions"] == []

    topic = unique("urp")
    assert run("topics", "create", "--topic", topic, "--partitions", "2", "--replication-factor", "3", *bs).code == 0
    def full_isr():
        t = _describe_when_known(run, bs, topic)
        return t is not None and all(len(p["isr"]) == 3 for p in t["partitions"])

    wait_for(full_isr, 30, "full ISR")
    gone = cluster.brokers[-1]
    gone.stop()
    live = ",".join(b.bootstrap for b in cluster.brokers if b is not gone)

    def under_replicated():
        result = run("cluster", "describe", "--json", "--bootstrap-server", live)
        if result.code:
            return None
        found = [p for p in result.json()["under_replicated_partitions"] if p["topic"] == topic]
        return found if len(found) == 2 else None

    for p in wait_for(under_replicated, 30, "the stopped broker to leave the ISR of both partitions"):
        assert gone.node_id in p["replicas"] and gone.node_id not in p["isr"]
    text = cli("cluster", "describe", "--bootstrap-server", live)
    assert text.code == 0 and "Under-replicated partitions: " in text.out and topic in text.out
