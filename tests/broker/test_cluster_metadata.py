"""The cluster metadata interface as single-node mode implements it.

LocalMetadata is checked through MetadataView and MetadataWriter alone:
files written before assignments and partition states were kept still
load (as this node alone), assignments and states survive a reload, and
pending topics stay invisible until published. A broker opens only the
partitions whose replicas include it; the log of one it is not a replica
of is a stray, moved aside with its data kept, as Kafka does with the
logs it finds for partitions assigned elsewhere (KIP-858). Clients see the
kept assignments through Metadata, across a restart.
"""

from __future__ import annotations

import inspect
import json
import re
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from kafka import KafkaAdminClient
from kafka.admin import NewPartitions as KNewPartitions
from kafka.admin import NewTopic as KNewTopic
from kafka.errors import InvalidReplicationAssignmentError

import pybroker
from pybroker.broker import Broker
from pybroker.cluster.admin import TopicAdmin
from pybroker.cluster.local import METADATA_FILE, LocalMetadata
from pybroker.cluster.metadata import MetadataView, MetadataWriter
from pybroker.cluster.model import BrokerInfo, PartitionState
from pybroker.cluster.placement import assign_replicas
from pybroker.config import BrokerConfig
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.testing import running_broker
from pybroker.topics import Topics

TIMEOUT = 30
NODE = 1


def local(path, node_id: int = NODE) -> LocalMetadata:
    return LocalMetadata(path / METADATA_FILE, node_id, BrokerInfo(node_id, "127.0.0.1", 9092))


def view(md) -> MetadataView:
    return md


def writer(md) -> MetadataWriter:
    return md


def test_a_file_of_the_first_version_loads_as_this_node_alone(tmp_path):
    """The flat layout (leader, epoch, replicas, isr beside the index) of
    the first file version loads as it was; a partition stored without
    them has this node as its only replica, leader and ISR."""
    topic_id = uuid.uuid4()
    (tmp_path / METADATA_FILE).write_text(
        json.dumps(
            {
                "version": 1,
                "cluster_id": "abcdefghijklmnopqrstuv",
                "next_producer_id_block": 3000,
                "topics": [
                    {
                        "name": "old",
                        "id": str(topic_id),
                        "configs": {"retention.ms": "1000"},
                        "partitions": [
                            {"index": 0, "leader": NODE, "epoch": 4, "replicas": [NODE], "isr": [NODE]},
                            {"index": 1},
                        ],
                    }
                ],
            }
        )
    )
    md = view(local(tmp_path))
    info = md.topic("old")
    assert md.topic_by_id(topic_id) is info and [t.name for t in md.all_topics()] == ["old"]
    assert info.configs == {"retention.ms": "1000"}
    assert info.assignment == {0: [NODE], 1: [NODE]}
    assert md.partition_state("old", 0) == PartitionState(NODE, 4, [NODE])
    assert md.partition_state("old", 1) == PartitionState(NODE, 0, [NODE])
    assert md.partition_state("old", 2) is None and md.partition_state("new", 0) is None
    assert md.cluster_id == "abcdefghijklmnopqrstuv" and md.controller_id == NODE
    assert writer(md).allocate_producer_ids(10) == range(3000, 3010)


def test_assignments_and_states_round_trip(tmp_path):
    md = local(tmp_path)
    created = writer(md).create_topic("t", [[NODE, 2], [2, NODE]], {"cleanup.policy": "compact"})
    grown = writer(md).add_partitions("t", [[NODE, 3]])
    assert view(md).topic("t").assignment == {0: [NODE, 2], 1: [2, NODE]}  # pending until published
    writer(md).publish("t")
    assert view(md).topic("t") is grown
    # As Kafka's topic znode and partition-state znodes have them.
    stored = json.loads((tmp_path / METADATA_FILE).read_text())
    assert stored["version"] == 2
    (topic,) = stored["topics"]
    assert [(p["index"], p["replicas"]) for p in topic["partitions"]] == [(0, [NODE, 2]), (1, [2, NODE]), (2, [NODE, 3])]
    assert topic["partitions"][1]["state"] == {
        "leader": 2, "leader_epoch": 0, "isr": [2, NODE], "controller_epoch": 0, "version": 0,
    }

    again = view(local(tmp_path))
    info = again.topic("t")
    assert info.topic_id == created.topic_id and info.configs == {"cleanup.policy": "compact"}
    assert info.assignment == {0: [NODE, 2], 1: [2, NODE], 2: [NODE, 3]}
    assert again.partition_state("t", 1) == PartitionState(2, 0, [2, NODE])
    assert again.broker(NODE) == BrokerInfo(NODE, "127.0.0.1", 9092) and again.broker(2) is None


def test_pending_topics_are_invisible_until_published(tmp_path):
    md = local(tmp_path)
    info = writer(md).create_topic("p", [[NODE]], publish=False)
    assert view(md).topic("p") is None and view(md).topic_by_id(info.topic_id) is None
    assert writer(md).pending_topic("p") is info
    # Stored already: a crash now leaves it to be completed at the next start.
    assert [t["name"] for t in json.loads((tmp_path / METADATA_FILE).read_text())["topics"]] == ["p"]
    writer(md).abandon("p")
    assert writer(md).pending_topic("p") is None and view(md).all_topics() == []
    assert json.loads((tmp_path / METADATA_FILE).read_text())["topics"] == []


def test_a_change_that_cannot_be_stored_is_a_storage_error_and_undone(tmp_path):
    md = local(tmp_path)
    writer(md).create_topic("kept", [[NODE]])
    md.path = tmp_path / "missing-dir" / METADATA_FILE
    with pytest.raises(KafkaError) as refused:
        writer(md).create_topic("lost", [[NODE]])
    assert refused.value.code == ErrorCode.KAFKA_STORAGE_ERROR
    assert view(md).topic("lost") is None and view(md).topic("kept") is not None


def test_default_placement_is_kafkas_round_robin():
    assert assign_replicas([1], 3, 1) == [[1], [1], [1]]
    # AdminUtils.assignReplicasToBrokersRackUnaware with start index 0, shift 0.
    assert assign_replicas([3, 1, 2], 4, 2, start=0) == [[1, 2], [2, 3], [3, 1], [1, 3]]
    assert assign_replicas([1, 2, 3], 2, 3, first_partition=3, start=0) == [[1, 3, 2], [2, 1, 3]]
    with pytest.raises(ValueError):
        assign_replicas([1], 1, 2)


def test_a_broker_opens_only_the_partitions_it_is_a_replica_of(tmp_path):
    """Partition 1 is assigned to broker 7 alone: this broker does not open
    it, and the log it has for it is moved aside (a stray), its data kept."""
    config = BrokerConfig({"log.dirs": str(tmp_path), "listeners": "PLAINTEXT://127.0.0.1:0"})
    broker = Broker(config)
    broker.topics.create_topic("mixed", 2)
    broker.logs.close()
    path = tmp_path / METADATA_FILE
    data = json.loads(path.read_text())
    (stored,) = [t for t in data["topics"] if t["name"] == "mixed"]
    stored["partitions"][0]["replicas"] = [NODE, 7]
    stored["partitions"][1]["replicas"] = [7]
    stored["partitions"][1]["state"].update(leader=7, isr=[7])
    path.write_text(json.dumps(data))
    (tmp_path / "mixed-1" / "00000000000000000000.log").write_bytes(b"theirs")

    again = Broker(config)
    try:
        assert again.replicas.partition("mixed", 0) is not None
        assert again.replicas.partition("mixed", 1) is None
        assert not (tmp_path / "mixed-1").exists()
        (stray,) = [p for p in tmp_path.iterdir() if p.name.startswith("mixed-1.") and p.name.endswith("-stray")]
        assert (stray / "00000000000000000000.log").read_bytes() == b"theirs"
        # The metadata still has the whole topic as assigned.
        assert again.metadata.topic("mixed").assignment == {0: [NODE, 7], 1: [7]}
    finally:
        again.logs.close()


def test_metadata_answers_the_stored_assignment_and_state(tmp_path):
    """Replicas as assigned, the leader and ISR from the partition state;
    a replica on an unregistered broker is offline, and a partition led by
    one has no leader (LEADER_NOT_AVAILABLE), as Kafka's metadata cache."""
    with running_broker(data_dir=tmp_path) as running:
        admin = AdminClient({"bootstrap.servers": running.bootstrap_servers})  # held: its futures need it
        admin.create_topics([NewTopic("mixed", 2, 1)])["mixed"].result(TIMEOUT)
    path = tmp_path / METADATA_FILE
    data = json.loads(path.read_text())
    (stored,) = [t for t in data["topics"] if t["name"] == "mixed"]
    stored["partitions"][0]["replicas"] = [NODE, 7]
    stored["partitions"][1]["replicas"] = [7]
    stored["partitions"][1]["state"].update(leader=7, isr=[7], leader_epoch=3)
    path.write_text(json.dumps(data))

    with running_broker(data_dir=tmp_path) as running, KafkaAdminClient(bootstrap_servers=running.bootstrap_servers) as admin:
        (topic,) = admin.describe_topics(["mixed"])
    parts = {p["partition_index"]: p for p in topic["partitions"]}
    assert (parts[0]["error_code"], parts[0]["leader_id"], parts[0]["replica_nodes"], parts[0]["isr_nodes"]) == (
        0, NODE, [NODE, 7], [NODE],
    )
    assert parts[0]["offline_replicas"] == [7]
    assert parts[1]["error_code"] == ErrorCode.LEADER_NOT_AVAILABLE
    assert (parts[1]["leader_id"], parts[1]["leader_epoch"], parts[1]["replica_nodes"]) == (-1, 3, [7])
    assert (parts[1]["isr_nodes"], parts[1]["offline_replicas"]) == ([7], [7])


def replicas_seen(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """{partition: (leader, replicas, isr)} as confluent-kafka's metadata shows it."""
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=TIMEOUT)
    return {p.id: (p.leader, list(p.replicas), list(p.isrs)) for p in md.topics[topic].partitions.values()}


def test_manual_assignments_are_kept_and_survive_a_restart(tmp_path):
    with running_broker(data_dir=tmp_path) as running:
        bootstrap = running.bootstrap_servers
        with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
            admin.create_topics([KNewTopic("manual", replica_assignments={0: [NODE], 1: [NODE]})])
            admin.create_partitions({"manual": KNewPartitions(3, [[NODE]])})
            # A broker that is not registered is refused, as Kafka refuses it.
            with pytest.raises(InvalidReplicationAssignmentError, match="no such broker is registered"):
                admin.create_topics([KNewTopic("elsewhere", replica_assignments={0: [NODE, 9]})])
        confluent = AdminClient({"bootstrap.servers": bootstrap})  # held: its futures need it
        confluent.create_partitions([NewPartitions("manual", 4, replica_assignment=[[NODE]])])["manual"].result(TIMEOUT)
        expected = {i: (NODE, [NODE], [NODE]) for i in range(4)}
        assert replicas_seen(bootstrap, "manual") == expected
        assert running.broker.metadata.topic("manual").assignment == {i: [NODE] for i in range(4)}
        assert running.broker.metadata.topic("elsewhere") is None
    with running_broker(data_dir=tmp_path) as running:
        assert replicas_seen(running.bootstrap_servers, "manual") == expected
        assert json.loads((tmp_path / METADATA_FILE).read_text())["version"] == 2


def protocol_members(protocol) -> set[str]:
    return {n for n in vars(protocol) if not n.startswith("_")} | set(getattr(protocol, "__annotations__", {}))


@pytest.mark.parametrize(
    ("protocol", "implementation"),
    [(MetadataView, LocalMetadata), (MetadataWriter, LocalMetadata), (TopicAdmin, Topics)],
)
def test_the_implementations_have_every_member_of_their_interface(protocol, implementation):
    missing = {n for n in protocol_members(protocol) if not hasattr(implementation, n)}
    # admin_lock is an attribute each Topics sets itself.
    assert missing <= {"admin_lock"}, missing
    for name in protocol_members(protocol) - missing:
        wanted = inspect.signature(getattr(protocol, name)) if callable(getattr(protocol, name)) else None
        given = getattr(implementation, name)
        if wanted is not None and callable(given):
            assert list(inspect.signature(given).parameters) == list(wanted.parameters), name


# Handlers owned elsewhere that still read the legacy ``topics`` mapping;
# each moves to ``metadata.topic(name)`` when it is converted to services.
LEGACY_TOPICS_MAPPING: set[str] = set()


def test_callers_use_the_metadata_interface_not_a_dict_of_topics():
    root = Path(pybroker.__file__).parent
    users = set()
    for path in root.rglob("*.py"):
        text = path.read_text()
        if re.search(r"(metadata|md)\.topics\b", text):
            users.add(path.relative_to(root).as_posix())
    assert users <= LEGACY_TOPICS_MAPPING, users - LEGACY_TOPICS_MAPPING
