"""Two brokers and the controller on one ZooKeeper: admin requests on
either broker, answers as cluster members, real clients routed to leaders."""

import contextlib
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.alter_configs_request import AlterableConfig, AlterConfigsRequest, AlterConfigsResource
from pybroker.protocol.messages.create_partitions_request import CreatePartitionsRequest, CreatePartitionsTopic
from pybroker.protocol.messages.create_topics_request import (
    CreatableReplicaAssignment,
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
)
from pybroker.protocol.messages.delete_records_request import (
    DeleteRecordsPartition,
    DeleteRecordsRequest,
    DeleteRecordsTopic,
)
from pybroker.protocol.messages.delete_topics_request import DeleteTopicsRequest
from pybroker.protocol.messages.describe_cluster_request import DescribeClusterRequest
from pybroker.protocol.messages.describe_configs_request import DescribeConfigsRequest, DescribeConfigsResource
from pybroker.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pybroker.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from pybroker.protocol.messages.incremental_alter_configs_request import (
    AlterableConfig as IncrementalConfig,
)
from pybroker.protocol.messages.incremental_alter_configs_request import (
    AlterConfigsResource as IncrementalResource,
)
from pybroker.protocol.messages.incremental_alter_configs_request import IncrementalAlterConfigsRequest
from pybroker.protocol.messages.init_producer_id_request import InitProducerIdRequest
from pybroker.protocol.messages.list_offsets_request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from pybroker.protocol.messages.offset_for_leader_epoch_request import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)

from ..broker.raw_requests import produce_request
from .broker_support import cluster_broker, metadata, partitions_view, request, wait_for

TOPIC_RESOURCE = 2


@pytest.fixture
def two(zk_connect, tmp_path):
    """Brokers 1 and 2 of one cluster; {node id: RunningBroker}."""
    props = {"offsets.topic.replication.factor": "2", "default.replication.factor": "2"}
    with contextlib.ExitStack() as stack:
        brokers = {n: stack.enter_context(cluster_broker(zk_connect, n, tmp_path, props)) for n in (1, 2)}
        for b in brokers.values():
            wait_for(lambda b=b: len(metadata(b.bootstrap_servers, []).brokers) == 2, what="both brokers registered")
        yield brokers


def create(bootstrap: str, name: str, partitions=-1, factor=-1, assignments=None, configs=None, timeout_ms=15000):
    topic = CreatableTopic(
        name=name,
        num_partitions=partitions,
        replication_factor=factor,
        assignments=[
            CreatableReplicaAssignment(partition_index=i, broker_ids=r) for i, r in enumerate(assignments or [])
        ],
        configs=[CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()],
    )
    return request(bootstrap, CreateTopicsRequest(topics=[topic], timeout_ms=timeout_ms), 7).topics[0]


def same_view(brokers, topic: str):
    """The topic's partitions, once every broker reports them alike, each led."""
    views = [partitions_view(metadata(b.bootstrap_servers, [topic]), topic) for b in brokers.values()]
    if views[0] and all(v == views[0] for v in views) and all(p[1] >= 0 for p in views[0]):
        return views[0]
    return None


def leaders(view) -> dict[int, int]:
    return {p[0]: p[1] for p in view}


def test_a_topic_created_on_one_broker_is_reported_alike_by_both(two):
    b1, b2 = two[1].bootstrap_servers, two[2].bootstrap_servers
    result = create(b1, "spread", partitions=4, factor=2)
    assert (result.error_code, result.num_partitions, result.replication_factor) == (0, 4, 2)
    # Answered once broker 1 sees a leader for every partition.
    assert all(p[1] in (1, 2) for p in partitions_view(metadata(b1, ["spread"]), "spread"))
    view = wait_for(lambda: same_view(two, "spread"), what="the same view on both brokers")
    assert [p[0] for p in view] == [0, 1, 2, 3]
    for index, leader, epoch, replicas, isr, offline, error in view:
        assert sorted(replicas) == [1, 2] and leader == replicas[0] and epoch == 0
        assert sorted(isr) == [1, 2] and offline == [] and error == 0
    assert sorted(leaders(view).values()) == [1, 1, 2, 2]  # spread evenly
    assert result.topic_id == metadata(b2, ["spread"]).topics[0].topic_id
    for b in (b1, b2):
        cluster = request(b, DescribeClusterRequest(), 1)
        assert sorted(x.broker_id for x in cluster.brokers) == [1, 2]
        assert cluster.controller_id in (1, 2)
        assert cluster.controller_id == metadata(b, []).controller_id
    assert (
        request(b1, DescribeClusterRequest(), 1).controller_id == request(b2, DescribeClusterRequest(), 1).controller_id
    )


def test_a_broker_that_does_not_lead_answers_not_leader_or_follower(two):
    b1 = two[1].bootstrap_servers
    assert create(b1, "led", assignments=[[1, 2], [2, 1]]).error_code == 0
    assert create(b1, "elsewhere", assignments=[[2]]).error_code == 0
    view = wait_for(lambda: same_view(two, "led"), what="leaders")
    assert leaders(view) == {0: 1, 1: 2}
    wait_for(lambda: same_view(two, "elsewhere"), what="leaders")
    follower = two[2].bootstrap_servers  # follower of led-0, leader of led-1
    not_leader = ErrorCode.NOT_LEADER_OR_FOLLOWER
    # Hosted as a follower; not hosted at all.
    for broker, topic, partition in ((follower, "led", 0), (b1, "led", 1), (b1, "elsewhere", 0)):
        produced = request(broker, produce_request(topic, partition, [b"x"]), 9)
        assert produced.responses[0].partition_responses[0].error_code == not_leader
        fetched = request(
            broker,
            FetchRequest(
                max_wait_ms=0,
                topics=[
                    FetchTopic(topic=topic, partitions=[FetchPartition(partition=partition, partition_max_bytes=1024)])
                ],
            ),
            12,
        )
        assert fetched.responses[0].partitions[0].error_code == not_leader
        listed = request(
            broker,
            ListOffsetsRequest(
                replica_id=-1,
                topics=[
                    ListOffsetsTopic(
                        name=topic, partitions=[ListOffsetsPartition(partition_index=partition, timestamp=-1)]
                    )
                ],
            ),
            7,
        )
        assert listed.topics[0].partitions[0].error_code == not_leader
        deleted = request(
            broker,
            DeleteRecordsRequest(
                topics=[
                    DeleteRecordsTopic(
                        name=topic, partitions=[DeleteRecordsPartition(partition_index=partition, offset=0)]
                    )
                ]
            ),
            2,
        )
        assert deleted.topics[0].partitions[0].error_code == not_leader
        epochs = request(
            broker,
            OffsetForLeaderEpochRequest(
                topics=[
                    OffsetForLeaderTopic(
                        topic=topic, partitions=[OffsetForLeaderPartition(partition=partition, leader_epoch=0)]
                    )
                ]
            ),
            4,
        )
        assert epochs.topics[0].partitions[0].error_code == not_leader
    # The leader checks the epoch the client knows: older is fenced, newer unknown.
    produced = request(b1, produce_request("led", 0, [b"ok"]), 9)
    assert produced.responses[0].partition_responses[0].error_code == 0
    for epoch, code in ((-1, ErrorCode.NONE), (0, ErrorCode.NONE), (1, ErrorCode.UNKNOWN_LEADER_EPOCH)):
        fetched = request(
            b1,
            FetchRequest(
                max_wait_ms=0,
                topics=[
                    FetchTopic(
                        topic="led",
                        partitions=[FetchPartition(partition=0, current_leader_epoch=epoch, partition_max_bytes=1024)],
                    )
                ],
            ),
            12,
        )
        assert fetched.responses[0].partitions[0].error_code == code
    # Unknown topic: UNKNOWN_TOPIC_OR_PARTITION, as ever.
    produced = request(follower, produce_request("nowhere", 0, [b"x"]), 9)
    assert produced.responses[0].partition_responses[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_kafka_python_follows_the_leaders_from_one_bootstrap_broker(two):
    b1 = two[1].bootstrap_servers
    assert create(b1, "routed", partitions=4, factor=1).error_code == 0
    view = wait_for(lambda: same_view(two, "routed"), what="leaders")
    assert set(leaders(view).values()) == {1, 2}
    producer = KafkaProducer(bootstrap_servers=b1, acks="all", retries=5)
    for i in range(40):
        producer.send("routed", key=b"k%d" % i, value=b"v%d" % i, partition=i % 4)
    producer.flush(30)
    producer.close()
    for node, broker in two.items():  # each leader holds its own partitions' records
        for index, leader in leaders(view).items():
            part = broker.broker.replicas.partition("routed", index)
            assert (part is not None) == (leader == node)
            if part is not None:
                assert part.log.log_end_offset == 10
    consumer = KafkaConsumer(
        "routed", bootstrap_servers=b1, group_id="g-routed", auto_offset_reset="earliest", consumer_timeout_ms=15000
    )
    seen = set()
    for message in consumer:
        seen.add(message.value)
        if len(seen) == 40:
            break
    consumer.commit()
    consumer.close()
    assert seen == {b"v%d" % i for i in range(40)}
    # The group's coordinator leads its partition of __consumer_offsets (RF 2 here).
    found = request(b1, FindCoordinatorRequest(key="g-routed"), 3)
    offsets = wait_for(lambda: same_view(two, "__consumer_offsets"), what="the offsets topic")
    assert found.error_code == 0 and found.node_id in {p[1] for p in offsets}
    assert all(sorted(p[3]) == [1, 2] for p in offsets)


def test_replication_factor_above_the_live_brokers(two):
    b2 = two[2].bootstrap_servers
    result = create(b2, "too-many", partitions=1, factor=3)
    assert result.error_code == ErrorCode.INVALID_REPLICATION_FACTOR
    assert result.error_message == "Replication factor: 3 larger than available brokers: 2."
    result = create(b2, "nobody", assignments=[[1, 7]])
    assert result.error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert metadata(b2, ["too-many", "nobody"]).topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    # validate_only writes nothing.
    topic = CreatableTopic(name="checked", num_partitions=2, replication_factor=2)
    answer = request(b2, CreateTopicsRequest(topics=[topic], validate_only=True, timeout_ms=5000), 7)
    assert answer.topics[0].error_code == 0
    assert metadata(b2, ["checked"]).topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    # A topic that exists already, on either broker.
    assert create(b2, "once", partitions=1, factor=2).error_code == 0
    wait_for(lambda: same_view(two, "once"), what="once everywhere")
    assert create(two[1].bootstrap_servers, "once", partitions=1, factor=2).error_code == ErrorCode.TOPIC_ALREADY_EXISTS


def test_deleting_a_topic_removes_its_logs_on_both_brokers(two):
    b1, b2 = two[1].bootstrap_servers, two[2].bootstrap_servers
    assert create(b1, "doomed", partitions=2, factor=2).error_code == 0
    wait_for(lambda: same_view(two, "doomed"), what="doomed everywhere")
    dirs = [b.data_dir for b in two.values()]
    assert all(len(list(d.glob("doomed-*"))) == 2 for d in dirs)
    answer = request(b2, DeleteTopicsRequest(topic_names=["doomed"], timeout_ms=15000), 4)
    assert answer.responses[0].error_code == 0
    assert metadata(b2, ["doomed"]).topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    wait_for(lambda: metadata(b1, ["doomed"]).topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    wait_for(lambda: all(not list(d.glob("doomed-*")) for d in dirs), what="the logs removed")
    for b in two.values():
        assert b.broker.replicas.partition("doomed", 0) is None
    answer = request(b1, DeleteTopicsRequest(topic_names=["doomed"], timeout_ms=5000), 4)
    assert answer.responses[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    # The name can be used again, for a new topic.
    assert create(b1, "doomed", partitions=1, factor=1).error_code == 0


def test_adding_partitions(two):
    b1, b2 = two[1].bootstrap_servers, two[2].bootstrap_servers
    assert create(b1, "grows", partitions=1, factor=2).error_code == 0
    wait_for(lambda: same_view(two, "grows"), what="grows everywhere")
    answer = request(
        b2,
        CreatePartitionsRequest(
            topics=[CreatePartitionsTopic(name="grows", count=3, assignments=None)], timeout_ms=15000
        ),
        3,
    )
    assert answer.results[0].error_code == 0
    assert len(partitions_view(metadata(b2, ["grows"]), "grows")) == 3  # answered once visible here
    view = wait_for(lambda: same_view(two, "grows"), what="three partitions everywhere")
    assert len(view) == 3 and all(sorted(p[3]) == [1, 2] for p in view)
    answer = request(
        b1,
        CreatePartitionsRequest(
            topics=[CreatePartitionsTopic(name="grows", count=3, assignments=None)], timeout_ms=5000
        ),
        3,
    )
    assert answer.results[0].error_code == ErrorCode.INVALID_PARTITIONS


def describe(bootstrap: str, topic: str, key: str) -> str | None:
    resource = DescribeConfigsResource(resource_type=TOPIC_RESOURCE, resource_name=topic, configuration_keys=[key])
    result = request(bootstrap, DescribeConfigsRequest(resources=[resource]), 4).results[0]
    return result.configs[0].value if result.configs else None


def test_config_changes_reach_every_broker(two):
    b1, b2 = two[1].bootstrap_servers, two[2].bootstrap_servers
    assert create(b1, "tuned", partitions=2, factor=2, configs={"retention.ms": "3600000"}).error_code == 0
    wait_for(lambda: same_view(two, "tuned"), what="tuned everywhere")
    assert describe(b2, "tuned", "retention.ms") == "3600000"
    resource = AlterConfigsResource(
        resource_type=TOPIC_RESOURCE,
        resource_name="tuned",
        configs=[AlterableConfig(name="retention.ms", value="7200000")],
    )
    answer = request(b1, AlterConfigsRequest(resources=[resource]), 2)
    assert answer.responses[0].error_code == 0
    assert describe(b1, "tuned", "retention.ms") == "7200000"  # applied here when answered
    wait_for(lambda: describe(b2, "tuned", "retention.ms") == "7200000", what="the change on broker 2")
    for b in two.values():
        assert b.broker.replicas.partition("tuned", 0).log.config.retention_ms == 7200000
    incremental = IncrementalResource(
        resource_type=TOPIC_RESOURCE,
        resource_name="tuned",
        configs=[IncrementalConfig(name="cleanup.policy", config_operation=0, value="compact")],
    )
    answer = request(b2, IncrementalAlterConfigsRequest(resources=[incremental]), 1)
    assert answer.responses[0].error_code == 0
    wait_for(lambda: describe(b1, "tuned", "cleanup.policy") == "compact", what="the change on broker 1")
    assert describe(b1, "tuned", "retention.ms") == "7200000"


def test_producer_ids_from_two_brokers_never_collide(two):
    ids = {1: [], 2: []}
    for i in range(1200):  # past a block of 1000 on one broker
        node = 1 if i % 6 else 2
        answer = request(two[node].bootstrap_servers, InitProducerIdRequest(transactional_id=None), 4)
        assert answer.error_code == 0
        ids[node].append(answer.producer_id)
    every = ids[1] + ids[2]
    assert len(set(every)) == len(every)
    assert not set(ids[1]) & set(ids[2])
    assert max(ids[1]) >= 1000 or max(ids[2]) >= 1000


def test_metadata_auto_creation_answers_leader_not_available(two):
    b2 = two[2].bootstrap_servers
    answer = metadata(b2, ["auto-made"], auto_create=True)
    assert answer.topics[0].error_code == ErrorCode.LEADER_NOT_AVAILABLE
    view = wait_for(lambda: same_view(two, "auto-made"), what="the auto-created topic everywhere")
    assert len(view) == 1 and sorted(view[0][3]) == [1, 2]  # default.replication.factor 2
    assert metadata(b2, ["auto-made"], auto_create=True).topics[0].error_code == 0
    assert uuid.UUID(int=0) != metadata(b2, ["auto-made"]).topics[0].topic_id


def test_a_request_timeout_of_zero_is_answered_at_once_the_change_made_all_the_same(two):
    # As Kafka's ZkAdminManager: REQUEST_TIMED_OUT at once, the topic written anyway.
    b1 = two[1].bootstrap_servers
    result = create(b1, "hasty", partitions=2, factor=2, timeout_ms=0)
    assert result.error_code == ErrorCode.REQUEST_TIMED_OUT
    wait_for(lambda: same_view(two, "hasty"), what="hasty created all the same")
    answer = request(b1, DeleteTopicsRequest(topic_names=["hasty"], timeout_ms=0), 4)
    assert answer.responses[0].error_code == ErrorCode.REQUEST_TIMED_OUT
    wait_for(lambda: metadata(b1, ["hasty"]).topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
