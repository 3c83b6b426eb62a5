"""Three brokers and ZooKeeper, as clients see them.

A LocalCluster (three pybroker processes, one ZooKeeper process, all on
loopback) serves the whole module. Every broker must describe the same
cluster: three brokers, one controller, the same leader, leader epoch,
replicas and ISR for every partition. A topic of 6 partitions × RF 3,
created with an admin client, is spread evenly (each broker leads 2 and
holds all 6). Then kafka-python, confluent-kafka, aiokafka and KafkaJS, each
given the address of one broker only (not the same one), produce to and
consume from every partition through their own leader routing, and a
consumer group of each commits its offsets with the coordinator that Kafka's
rule picks (the leader of the group's ``__consumer_offsets`` partition).
"""

from __future__ import annotations

import itertools
import shutil
import uuid

import pytest

from pybroker.local_cluster import LocalCluster, metadata, wait_for
from pybroker.process import request
from pybroker.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from pybroker.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic
from pybroker.protocol.messages.offset_fetch_request import OffsetFetchRequest, OffsetFetchRequestTopic

from .roundtrips import CLIENTS, KAFKAJS

BROKERS = 3
PARTITIONS = 6
OFFSETS_PARTITIONS = 6
PER_PARTITION = 5
NOT_COORDINATOR = 16
NOT_LEADER_OR_FOLLOWER = 6
LATEST = -1


@pytest.fixture(scope="module")
def cluster():
    props = {
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.num.partitions": str(OFFSETS_PARTITIONS),
        "auto.create.topics.enable": "false",
    }
    with LocalCluster(BROKERS, overrides=props) as c:
        yield c


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def partition_view(answer) -> dict:
    """What a client learns about topics from one Metadata answer, comparable between brokers."""
    return {
        (t.name, p.partition_index): (
            p.error_code,
            p.leader_id,
            p.leader_epoch,
            tuple(p.replica_nodes),
            tuple(p.isr_nodes),
            tuple(p.offline_replicas),
        )
        for t in answer.topics
        for p in t.partitions
    }


def cluster_view(answer) -> tuple:
    brokers = sorted((b.node_id, b.host, b.port) for b in answer.brokers)
    return answer.cluster_id, answer.controller_id, brokers, partition_view(answer)


def same_view_everywhere(cluster: LocalCluster, topics=None) -> tuple:
    """The one view every broker gives, once they agree (propagation through ZooKeeper watches takes a moment)."""

    def agreed():
        views = [cluster_view(b.metadata(topics)) for b in cluster.brokers]
        return views[0] if all(v == views[0] for v in views) else None

    return wait_for(agreed, 30, "every broker to give the same Metadata")


def create_with_admin(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3)])
    assert futures[topic].result(30) is None


def test_every_broker_describes_the_same_cluster(cluster):
    topic = unique("same-view")
    create_with_admin(cluster.brokers[0].bootstrap, topic)
    cluster_id, controller, brokers, partitions = same_view_everywhere(cluster, topics=None)
    assert [b[0] for b in brokers] == [1, 2, 3]
    assert brokers == sorted((b.node_id, "127.0.0.1", b.port) for b in cluster.brokers)
    assert controller in (1, 2, 3) and cluster_id
    mine = {k: v for k, v in partitions.items() if k[0] == topic}
    assert sorted(p for _, p in mine) == list(range(PARTITIONS))
    for error, leader, epoch, replicas, isr, offline in mine.values():
        assert error == 0 and leader == replicas[0] and epoch == 0
        assert sorted(replicas) == [1, 2, 3] and sorted(isr) == [1, 2, 3] and offline == ()


def test_a_topic_is_spread_evenly(cluster):
    topic = unique("spread")
    create_with_admin(cluster.brokers[1].bootstrap, topic)
    _, _, _, partitions = same_view_everywhere(cluster, topics=[topic])
    leaders = [v[1] for v in partitions.values()]
    assert sorted(leaders.count(b) for b in (1, 2, 3)) == [2, 2, 2], partitions
    replicas = [r for v in partitions.values() for r in v[3]]
    assert [replicas.count(b) for b in (1, 2, 3)] == [6, 6, 6], partitions
    # Each broker hosts a replica of every partition: its log dir holds all six.
    for broker in cluster.brokers:
        wait_for(
            lambda b=broker: all((b.data_dir / f"{topic}-{p}").is_dir() for p in range(PARTITIONS)),
            30,
            f"broker {broker.node_id} to create its replicas of {topic}",
        )


def java_string_hash(text: str) -> int:
    """Java's String.hashCode: over UTF-16 code units, in int32 arithmetic."""
    raw = text.encode("utf-16-be")
    h = 0
    for i in range(0, len(raw), 2):
        h = (31 * h + int.from_bytes(raw[i : i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def coordinator_partition(group: str) -> int:
    """Kafka's GroupMetadataManager.partitionFor: Utils.abs(groupId.hashCode) % partitions."""
    h = java_string_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % OFFSETS_PARTITIONS


def check_coordinator(cluster: LocalCluster, group: str, topic: str, committed: dict[int, int]) -> None:
    """Every broker names the same coordinator, the leader of the group's partition, which alone holds the offsets."""
    offsets = metadata(cluster.brokers[0].bootstrap, ["__consumer_offsets"]).topics[0]
    leader = {p.partition_index: p.leader_id for p in offsets.partitions}[coordinator_partition(group)]
    for broker in cluster.brokers:
        answer = request(broker.bootstrap, FindCoordinatorRequest(key=group, key_type=0), 3)
        assert (answer.error_code, answer.node_id) == (0, leader), f"broker {broker.node_id}: {answer}"
    fetch = OffsetFetchRequest(
        group_id=group, topics=[OffsetFetchRequestTopic(name=topic, partition_indexes=list(range(PARTITIONS)))]
    )
    for broker in cluster.brokers:
        answer = request(broker.bootstrap, fetch, 7)
        if broker.node_id != leader:
            assert answer.error_code == NOT_COORDINATOR, f"broker {broker.node_id} answered for {group}"
            continue
        assert answer.error_code == 0
        stored = {p.partition_index: p.committed_offset for t in answer.topics for p in t.partitions}
        assert stored == committed


@pytest.fixture(scope="module")
def kafkajs_installed():
    assert shutil.which("node"), "node is needed (Debian: apt-get install nodejs; .ci/run installs it)"
    assert (KAFKAJS / "node_modules" / "kafkajs").is_dir(), f"run (cd {KAFKAJS} && npm ci)"


BOOTSTRAP_INDEX = dict(zip(CLIENTS, itertools.cycle(range(BROKERS))))


@pytest.mark.parametrize("client", list(CLIENTS))
def test_client_produces_and_consumes_every_partition_from_one_bootstrap(cluster, client, kafkajs_installed):
    broker = cluster.brokers[BOOTSTRAP_INDEX[client]]
    topic, group = unique(f"rt-{client}"), unique(f"group-{client}")
    create_with_admin(broker.bootstrap, topic)
    same_view_everywhere(cluster, topics=[topic])

    result = CLIENTS[client](broker.bootstrap, topic, group, PARTITIONS, PER_PARTITION)

    expected_offsets = {(p, o) for p in range(PARTITIONS) for o in range(PER_PARTITION)}
    assert set(result.delivered) == expected_offsets, "acknowledged at unexpected places"
    for (p, _), value in result.delivered.items():
        assert value.split()[1] == f"p{p}", f"{value} acknowledged on partition {p}"
    assert result.consumed == result.delivered
    assert result.committed == dict.fromkeys(range(PARTITIONS), PER_PARTITION)
    check_coordinator(cluster, group, topic, result.committed)
    # The data sits with each partition's leader; the other brokers send clients there.
    _, _, _, partitions = same_view_everywhere(cluster, topics=[topic])
    leaders = {p: v[1] for (_, p), v in partitions.items()}
    for broker in cluster.brokers:
        ends = latest_offsets(broker.bootstrap, topic)
        for p, (error, offset) in ends.items():
            if leaders[p] == broker.node_id:
                assert (error, offset) == (0, PER_PARTITION), f"partition {p} on its leader {broker.node_id}"
            else:
                assert error == NOT_LEADER_OR_FOLLOWER, f"partition {p} on broker {broker.node_id}: {error}"


def latest_offsets(bootstrap: str, topic: str) -> dict[int, tuple[int, int]]:
    """{partition: (error code, latest offset)} from one broker's ListOffsets v5."""
    wanted = [ListOffsetsPartition(partition_index=p, timestamp=LATEST) for p in range(PARTITIONS)]
    body = ListOffsetsRequest(replica_id=-1, topics=[ListOffsetsTopic(name=topic, partitions=wanted)])
    answer = request(bootstrap, body, 5)
    return {p.partition_index: (p.error_code, p.offset) for t in answer.topics for p in t.partitions}
