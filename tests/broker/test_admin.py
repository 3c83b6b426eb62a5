"""Topic and config administration through real admin clients.

kafka-python's KafkaAdminClient, confluent-kafka's AdminClient (librdkafka)
and aiokafka's AIOKafkaAdminClient talk to a broker over TCP; what they see
is checked against what Apache Kafka answers (error codes, config sources,
synonyms). A few requests no client exposes (DeleteTopics by topic id,
OffsetForLeaderEpoch, DescribeCluster for controllers, DescribeConfigs with
documentation, a fetch session across a deletion) go over the raw wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.admin import NewPartitions as AioNewPartitions
from aiokafka.admin import NewTopic as AioNewTopic
from aiokafka.admin.config_resource import ConfigResource as AioResource
from aiokafka.admin.config_resource import ConfigResourceType as AioType
from aiokafka.structs import TopicPartition as ATP
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTP
from kafka.admin import AlterConfigOp, ConfigResourceType
from kafka.admin import ConfigResource as KResource
from kafka.errors import (
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidReplicationAssignmentError,
    InvalidReplicationFactorError,
    OffsetOutOfRangeError,
    PolicyViolationError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.delete_topics_request import DeleteTopicsRequest, DeleteTopicState
from pybroker.protocol.messages.describe_cluster_request import DescribeClusterRequest
from pybroker.protocol.messages.describe_configs_request import DescribeConfigsRequest, DescribeConfigsResource
from pybroker.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pybroker.protocol.messages.offset_for_leader_epoch_request import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)
from pybroker.protocol.registry import ApiKey
from pybroker.replica.partition import end_offset_for
from pybroker.testing import running_broker

from .wire import Wire

TIMEOUT = 30


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


_confluent_clients: dict[str, AdminClient] = {}


def confluent(bootstrap: str) -> AdminClient:
    """One AdminClient per broker: its futures fail if the client is
    garbage-collected while they are pending."""
    if bootstrap not in _confluent_clients:
        _confluent_clients[bootstrap] = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
    return _confluent_clients[bootstrap]


@contextlib.contextmanager
def own_broker(props: dict):
    """A broker with its own properties for one test; its AdminClient goes
    with it (a client left behind would keep reconnecting)."""
    with running_broker(props) as broker:
        try:
            yield broker
        finally:
            client = _confluent_clients.pop(broker.bootstrap_servers, None)
            del client


@contextlib.contextmanager
def kafka_python(bootstrap: str):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-admin", request_timeout_ms=TIMEOUT * 1000)
    try:
        yield admin
    finally:
        admin.close()


def aiokafka(bootstrap: str, work):
    """Run ``await work(admin)`` with a started AIOKafkaAdminClient."""

    async def main():
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT * 1000)
        await admin.start()
        try:
            return await work(admin)
        finally:
            await admin.close()

    return asyncio.run(main())


def confluent_error(future) -> KafkaError:
    with pytest.raises(KafkaException) as info:
        future.result(TIMEOUT)
    return info.value.args[0]


def create(bootstrap: str, name: str, partitions: int = 1, configs: dict | None = None) -> None:
    futures = confluent(bootstrap).create_topics([NewTopic(name, partitions, 1, config=configs or {})])
    futures[name].result(TIMEOUT)


def topic_metadata(bootstrap: str, name: str) -> dict | None:
    """The topic as a fresh Metadata request (no auto-creation) shows it:
    {partition index: (leader, replicas)}, or None when it does not exist."""
    with kafka_python(bootstrap) as admin:
        (topic,) = admin.describe_topics([name])
    if topic["error_code"] == UnknownTopicOrPartitionError.errno:
        return None
    assert topic["error_code"] == 0, topic
    return {p["partition_index"]: (p["leader_id"], p["replica_nodes"]) for p in topic["partitions"]}


def describe_topic(bootstrap: str, name: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ResourceType.TOPIC, name)
    return confluent(bootstrap).describe_configs([resource])[resource].result(TIMEOUT)


def produce(bootstrap: str, topic: str, count: int, partition: int = 0, idempotent: bool = False) -> None:
    if idempotent:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    else:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, enable_idempotence=False)
    try:
        futures = [producer.send(topic, value=b"v%d" % i, partition=partition) for i in range(count)]
        producer.flush(TIMEOUT)
        for f in futures:
            f.get(TIMEOUT)
    finally:
        producer.close(10)


def earliest_and_latest(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    """ListOffsets -2 and -1, as a kafka-python consumer asks for them."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        tp = KTP(topic, partition)
        return consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


# -- CreateTopics ------------------------------------------------------------------


def test_create_topic_with_partitions_and_configs(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("orders")
    configs = {"retention.ms": "3600000", "cleanup.policy": "compact,delete", "max.message.bytes": "2000000"}
    create(bootstrap, name, 6, configs)

    assert topic_metadata(bootstrap, name) == {i: (1, [1]) for i in range(6)}

    described = describe_topic(bootstrap, name)
    assert described["retention.ms"].value == "3600000"
    assert described["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert described["cleanup.policy"].value == "compact,delete"
    assert described["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert described["segment.bytes"].value == "1073741824"
    assert described["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    # The log itself runs with the override.
    log = kafka_broker.broker.replicas.partition(name, 0).log
    assert log.config.retention_ms == 3600000 and log.config.compact and log.config.delete


def test_create_topic_response_v7_carries_id_partitions_and_configs(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("v7")
    with kafka_python(bootstrap) as admin:
        result = admin.create_topics({name: {"num_partitions": 3, "configs": {"segment.ms": "60000"}}})
    (topic,) = result["topics"]
    assert topic["error_code"] == 0 and topic["name"] == name
    assert topic["num_partitions"] == 3 and topic["replication_factor"] == 1
    assert uuid.UUID(str(topic["topic_id"])) == kafka_broker.broker.metadata.topic(name).topic_id
    assert topic["configs"]["segment.ms"]["value"] == "60000"
    assert topic["configs"]["segment.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert topic["configs"]["retention.bytes"]["config_source"] == "DEFAULT_CONFIG"
    assert topic["configs"]["retention.bytes"]["read_only"] is False
    assert len(topic_metadata(bootstrap, name)) == 3


def test_create_topic_defaults_come_from_broker(tmp_path):
    with own_broker({"num.partitions": "4", "log.segment.bytes": "2000000"}) as broker:
        name = unique("defaults")
        with kafka_python(broker.bootstrap_servers) as admin:
            (topic,) = admin.create_topics([name])["topics"]
        assert topic["num_partitions"] == 4
        assert topic["configs"]["segment.bytes"]["value"] == "2000000"
        assert topic["configs"]["segment.bytes"]["config_source"] == "STATIC_BROKER_CONFIG"
        assert len(topic_metadata(broker.bootstrap_servers, name)) == 4


def test_validate_only_creates_nothing(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("dry")
    futures = confluent(bootstrap).create_topics([NewTopic(name, 3, 1)], validate_only=True)
    assert futures[name].result(TIMEOUT) is None
    assert topic_metadata(bootstrap, name) is None
    assert kafka_broker.broker.metadata.topic(name) is None
    # validate_only still validates.
    futures = confluent(bootstrap).create_topics(
        [NewTopic(name, 3, 1, config={"retention.ms": "x"})], validate_only=True
    )
    assert confluent_error(futures[name]).code() == KafkaError.INVALID_CONFIG


def test_create_existing_topic_fails_for_every_client(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("twice")
    create(bootstrap, name, 2)

    err = confluent_error(confluent(bootstrap).create_topics([NewTopic(name, 2, 1)])[name])
    assert err.code() == KafkaError.TOPIC_ALREADY_EXISTS
    assert err.str() == f"Topic '{name}' already exists."

    with kafka_python(bootstrap) as admin, pytest.raises(TopicAlreadyExistsError):
        admin.create_topics({name: {"num_partitions": 2}})

    response = aiokafka(bootstrap, lambda admin: admin.create_topics([AioNewTopic(name, 2, 1)]))
    assert [(t, code) for t, code, *_ in response.topic_errors] == [(name, ErrorCode.TOPIC_ALREADY_EXISTS)]
    assert len(topic_metadata(bootstrap, name)) == 2


@pytest.mark.parametrize("name", ["bad name", "x" * 250, "..", "a/b"])
def test_invalid_topic_name(kafka_broker, name):
    err = confluent_error(confluent(kafka_broker.bootstrap_servers).create_topics([NewTopic(name, 1, 1)])[name])
    assert err.code() == KafkaError.TOPIC_EXCEPTION
    assert kafka_broker.broker.metadata.topic(name) is None


def test_colliding_topic_name(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    base = unique("dots")
    create(bootstrap, f"{base}.a")
    err = confluent_error(confluent(bootstrap).create_topics([NewTopic(f"{base}_a", 1, 1)])[f"{base}_a"])
    assert err.code() == KafkaError.TOPIC_EXCEPTION
    assert "collides with existing topic" in err.str()


@pytest.mark.parametrize(
    "configs, message",
    [
        ({"no.such.config": "1"}, "Unknown topic config name: no.such.config"),
        ({"retention.ms": "soon"}, "retention.ms"),
        ({"cleanup.policy": "shred"}, "cleanup.policy"),
        ({"min.cleanable.dirty.ratio": "2"}, "min.cleanable.dirty.ratio"),
    ],
)
def test_bad_config_is_invalid_config(kafka_broker, configs, message):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("badcfg")
    err = confluent_error(confluent(bootstrap).create_topics([NewTopic(name, 1, 1, config=configs)])[name])
    assert err.code() == KafkaError.INVALID_CONFIG
    assert message in err.str()
    with kafka_python(bootstrap) as admin, pytest.raises(InvalidConfigurationError):
        admin.create_topics({name: {"configs": configs}})
    assert topic_metadata(bootstrap, name) is None


def test_replication_factor_above_broker_count(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("rf3")
    err = confluent_error(confluent(bootstrap).create_topics([NewTopic(name, 1, 3)])[name])
    assert err.code() == KafkaError.INVALID_REPLICATION_FACTOR
    assert err.str() == (
        "Unable to replicate the partition 3 time(s): The target replication factor of 3 "
        "cannot be reached because only 1 broker(s) are registered."
    )
    with kafka_python(bootstrap) as admin, pytest.raises(InvalidReplicationFactorError):
        admin.create_topics({name: {"num_partitions": 1, "replication_factor": 3}})
    assert topic_metadata(bootstrap, name) is None


def test_bad_partition_counts_and_assignments(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    with kafka_python(bootstrap) as admin:
        with pytest.raises(InvalidPartitionsError):
            admin.create_topics({unique("zero"): {"num_partitions": 0}})
        with pytest.raises(InvalidReplicationAssignmentError):
            admin.create_topics({unique("node7"): {"assignments": {0: [7]}}})
        with pytest.raises(InvalidReplicationAssignmentError):
            admin.create_topics({unique("gap"): {"assignments": {0: [1], 2: [1]}}})
        name = unique("manual")
        admin.create_topics({name: {"assignments": {0: [1], 1: [1]}}})
    assert len(topic_metadata(bootstrap, name)) == 2


def test_duplicate_names_in_one_request(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    dup, ok = unique("dup"), unique("single")
    topics = [
        AioNewTopic(dup, 1, 1),
        AioNewTopic(ok, 1, 1),
        AioNewTopic(dup, 2, 1),
        AioNewTopic("__cluster_metadata", 1, 1),
    ]
    response = aiokafka(bootstrap, lambda admin: admin.create_topics(topics))
    codes = {t: code for t, code, *_ in response.topic_errors}
    assert codes == {
        dup: ErrorCode.INVALID_REQUEST,
        ok: ErrorCode.NONE,
        "__cluster_metadata": ErrorCode.INVALID_REQUEST,
    }
    assert topic_metadata(bootstrap, dup) is None and topic_metadata(bootstrap, ok) is not None


# -- CreatePartitions ----------------------------------------------------------------


def test_create_partitions(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("grow")
    create(bootstrap, name, 2)
    admin = confluent(bootstrap)

    admin.create_partitions([NewPartitions(name, 4)])[name].result(TIMEOUT)
    assert len(topic_metadata(bootstrap, name)) == 4
    produce(bootstrap, name, 3, partition=3)
    assert earliest_and_latest(bootstrap, name, 3) == (0, 3)

    assert admin.create_partitions([NewPartitions(name, 8)], validate_only=True)[name].result(TIMEOUT) is None
    assert len(topic_metadata(bootstrap, name)) == 4

    err = confluent_error(admin.create_partitions([NewPartitions(name, 4)])[name])
    assert err.code() == KafkaError.INVALID_PARTITIONS and err.str() == "Topic already has 4 partition(s)."
    err = confluent_error(admin.create_partitions([NewPartitions(name, 2)])[name])
    assert err.code() == KafkaError.INVALID_PARTITIONS
    assert err.str() == f"The topic {name} currently has 4 partition(s); 2 would not be an increase."
    err = confluent_error(admin.create_partitions([NewPartitions(name, 6, [[1], [1], [1]])])[name])
    assert err.code() == KafkaError.INVALID_REPLICA_ASSIGNMENT
    missing = unique("missing")
    assert confluent_error(admin.create_partitions([NewPartitions(missing, 2)])[missing]).code() == (
        KafkaError.UNKNOWN_TOPIC_OR_PART
    )

    with kafka_python(bootstrap) as kp:
        kp.create_partitions({name: 5})
        with pytest.raises(InvalidPartitionsError):
            kp.create_partitions({name: 5})

    aiokafka(bootstrap, lambda a: a.create_partitions({name: AioNewPartitions(6)}))
    assert len(topic_metadata(bootstrap, name)) == 6


# -- DeleteRecords -------------------------------------------------------------------


def test_delete_records_moves_log_start(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("trim")
    create(bootstrap, name, 1)
    produce(bootstrap, name, 10)
    assert earliest_and_latest(bootstrap, name) == (0, 10)

    with kafka_python(bootstrap) as admin:
        result = admin.delete_records({KTP(name, 0): 4})
        assert result[KTP(name, 0)]["low_watermark"] == 4
        with pytest.raises(OffsetOutOfRangeError):
            admin.delete_records({KTP(name, 0): 11})
    assert earliest_and_latest(bootstrap, name) == (4, 10)

    low = aiokafka(bootstrap, lambda a: a.delete_records({ATP(name, 0): RecordsToDelete(6)}))
    assert low == {ATP(name, 0): 6}

    # -1 means "up to the high watermark" (confluent's OFFSET_END).
    deleted = confluent(bootstrap).delete_records([TopicPartition(name, 0, -1)])
    (future,) = deleted.values()
    assert future.result(TIMEOUT).low_watermark == 10
    assert earliest_and_latest(bootstrap, name) == (10, 10)


def test_delete_records_refused_on_compacted_topic(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("compacted")
    create(bootstrap, name, 1, {"cleanup.policy": "compact"})
    with kafka_python(bootstrap) as admin:
        with pytest.raises(PolicyViolationError):
            admin.delete_records({KTP(name, 0): 0}, partition_leader_id=1)
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.delete_records({KTP(name, 5): 0}, partition_leader_id=1)


# -- DescribeConfigs -----------------------------------------------------------------


def test_describe_configs_topic_and_broker_with_synonyms(tmp_path):
    props = {"log.segment.bytes": "5000000", "log.retention.hours": "12"}
    with own_broker(props) as broker:
        bootstrap = broker.bootstrap_servers
        name = unique("syn")
        create(bootstrap, name, 1, {"segment.bytes": "3000000"})
        described = describe_topic(bootstrap, name)

        seg = described["segment.bytes"]
        assert seg.value == "3000000" and seg.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
        assert not seg.is_read_only and not seg.is_sensitive
        # librdkafka keys synonyms by name, so the later log.segment.bytes
        # (the default) hides the static one; kafka-python's test sees all three.
        assert {k: (s.value, s.source) for k, s in seg.synonyms.items()} == {
            "segment.bytes": ("3000000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value),
            "log.segment.bytes": ("1073741824", ConfigSource.DEFAULT_CONFIG.value),
        }
        idx = described["index.interval.bytes"]
        assert idx.value == "4096" and idx.source == ConfigSource.DEFAULT_CONFIG.value
        # The broker's retention (12 hours) is in effect; Kafka names its
        # source DEFAULT_CONFIG because log.retention.ms itself is unset.
        assert described["retention.ms"].value == str(12 * 3600 * 1000)
        assert described["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value

        resource = ConfigResource(ResourceType.BROKER, "1")
        broker_configs = confluent(bootstrap).describe_configs([resource])[resource].result(TIMEOUT)
        assert broker_configs["log.segment.bytes"].value == "5000000"
        assert broker_configs["log.segment.bytes"].source == ConfigSource.STATIC_BROKER_CONFIG.value
        assert broker_configs["log.segment.bytes"].is_read_only
        assert broker_configs["num.partitions"].value == "1"
        assert broker_configs["num.partitions"].source == ConfigSource.DEFAULT_CONFIG.value
        assert broker_configs["log.retention.hours"].source == ConfigSource.STATIC_BROKER_CONFIG.value
        assert broker_configs["log.retention.ms"].value is None

        # Clients send a broker resource to that broker; ask this one about another.
        wire = Wire(bootstrap)
        try:
            request = DescribeConfigsRequest(
                resources=[
                    DescribeConfigsResource(resource_type=4, resource_name=n, configuration_keys=None)
                    for n in ("7", "x", "")
                ]
            )
            wire.send(request, 4, 1)
            _, resp = wire.receive(ApiKey.DESCRIBE_CONFIGS, 4)
        finally:
            wire.close()
        assert [(r.resource_name, r.error_code, len(r.configs)) for r in resp.results] == [
            ("7", ErrorCode.INVALID_REQUEST, 0),
            ("x", ErrorCode.INVALID_REQUEST, 0),
            ("", ErrorCode.NONE, 0),  # cluster-wide dynamic defaults: none
        ]
        assert resp.results[0].error_message == "Unexpected broker id, expected 1 or empty string, but received 7"


def test_describe_configs_synonym_order_kafka_python(tmp_path):
    with own_broker({"log.segment.bytes": "5000000"}) as broker:
        bootstrap = broker.bootstrap_servers
        name = unique("kpsyn")
        create(bootstrap, name, 1, {"segment.bytes": "3000000"})
        with kafka_python(bootstrap) as admin:
            out = admin.describe_configs(
                [KResource(ConfigResourceType.TOPIC, name)], include_synonyms=True, config_filter="all"
            )
        seg = out["topic"][name]["segment.bytes"]
        assert seg["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert [(s["name"], s["value"], s["source"]) for s in seg["synonyms"]] == [
            ("segment.bytes", "3000000", "DYNAMIC_TOPIC_CONFIG"),
            ("log.segment.bytes", "5000000", "STATIC_BROKER_CONFIG"),
            ("log.segment.bytes", "1073741824", "DEFAULT_CONFIG"),
        ]
        assert seg["config_type"] == "INT"


def test_describe_configs_filter_and_errors(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("filter")
    create(bootstrap, name, 1)
    with kafka_python(bootstrap) as admin:
        out = admin.describe_configs(
            [KResource(ConfigResourceType.TOPIC, name, {"retention.ms": None, "cleanup.policy": None})],
            config_filter="all",
        )
        assert sorted(out["topic"][name]) == ["cleanup.policy", "retention.ms"]
        # "modified" (the default filter) leaves out defaults: nothing is overridden.
        assert admin.describe_configs([KResource(ConfigResourceType.TOPIC, name)])["topic"][name] == {}
        loggers = admin.describe_configs([KResource(ConfigResourceType.BROKER_LOGGER, "1")], config_filter="all")
        assert "root" in loggers["broker_logger"]["1"]

    missing = unique("nope")
    resource = ConfigResource(ResourceType.TOPIC, missing)
    err = confluent_error(confluent(bootstrap).describe_configs([resource])[resource])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_describe_configs_types_and_documentation(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("docs")
    create(bootstrap, name, 1)
    wire = Wire(bootstrap)
    try:
        resource = DescribeConfigsResource(resource_type=2, resource_name=name, configuration_keys=None)
        for version, docs in ((4, True), (3, False), (1, False)):
            wire.send(DescribeConfigsRequest(resources=[resource], include_documentation=docs), version, version)
            _, resp = wire.receive(ApiKey.DESCRIBE_CONFIGS, version)
            (result,) = resp.results
            entries = {c.name: c for c in result.configs}
            assert result.error_code == 0 and result.error_message is None
            if version >= 3:
                assert (entries["retention.ms"].config_type, entries["cleanup.policy"].config_type) == (5, 7)
                assert (entries["preallocate"].config_type, entries["min.cleanable.dirty.ratio"].config_type) == (1, 6)
                assert (entries["retention.ms"].documentation is not None) is docs
            assert all(not c.read_only and not c.is_sensitive and c.synonyms == [] for c in entries.values())
    finally:
        wire.close()


def test_broker_logger_levels(kafka_broker):
    logger = logging.getLogger("pybroker")
    before = logger.level
    resource = KResource(ConfigResourceType.BROKER_LOGGER, "1")
    try:
        with kafka_python(kafka_broker.bootstrap_servers) as admin:
            result = admin.alter_configs([KResource(ConfigResourceType.BROKER_LOGGER, "1", {"pybroker": "TRACE"})])
            assert result == {"broker_logger": {"1": "OK"}}
            assert logger.level == 5
            described = admin.describe_configs([resource], config_filter="all")["broker_logger"]["1"]
            assert described["pybroker"]["value"] == "TRACE"
            assert described["pybroker"]["config_source"] == "DYNAMIC_BROKER_LOGGER_CONFIG"
            bad = admin.alter_configs(
                [KResource(ConfigResourceType.BROKER_LOGGER, "1", {"pybroker": "LOUD"})], raise_on_unknown=False
            )
            assert "InvalidConfigurationError" in bad["broker_logger"]["1"]
            admin.alter_configs(
                [KResource(ConfigResourceType.BROKER_LOGGER, "1", {"pybroker": (AlterConfigOp.DELETE, None)})]
            )
            assert logger.level == logging.NOTSET
    finally:
        logger.setLevel(before)


# -- AlterConfigs / IncrementalAlterConfigs -------------------------------------------


def test_legacy_alter_configs_replaces_overrides(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("legacy")
    create(bootstrap, name, 1, {"retention.ms": "1000", "segment.ms": "50000"})

    (response,) = aiokafka(
        bootstrap, lambda a: a.alter_configs([AioResource(AioType.TOPIC, name, {"max.message.bytes": "5000"})])
    )
    assert [tuple(r) for r in response.resources] == [(0, None, AioType.TOPIC, name)]
    described = describe_topic(bootstrap, name)
    assert described["max.message.bytes"].value == "5000"
    assert described["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # Legacy AlterConfigs drops the overrides it was not given.
    assert described["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert described["segment.ms"].value == str(7 * 24 * 3600 * 1000)

    with kafka_python(bootstrap) as admin:
        # kafka-python keeps the other overrides itself on the legacy API.
        result = admin.alter_configs(
            [KResource(ConfigResourceType.TOPIC, name, {"retention.ms": "2000"})], incremental=False
        )
        assert result == {"topic": {name: "OK"}}
        result = admin.alter_configs(
            [KResource(ConfigResourceType.TOPIC, name, {"retention.ms": "3000"})], incremental=False, validate_only=True
        )
        assert result == {"topic": {name: "OK"}}
        bad = admin.alter_configs(
            [KResource(ConfigResourceType.TOPIC, name, {"retention.ms": "never"})],
            incremental=False,
            raise_on_unknown=False,
        )
        assert "InvalidConfigurationError" in bad["topic"][name]
        assert "Invalid value never for configuration retention.ms: Not a number of type LONG" in bad["topic"][name]
    described = describe_topic(bootstrap, name)
    assert described["retention.ms"].value == "2000"
    assert described["max.message.bytes"].value == "5000"
    assert kafka_broker.broker.replicas.partition(name, 0).log.config.retention_ms == 2000


def test_incremental_alter_configs(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("incr")
    create(bootstrap, name, 1, {"retention.ms": "1000", "flush.messages": "10"})
    admin = confluent(bootstrap)

    def alter(*entries, validate_only=False):
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=list(entries))
        return admin.incremental_alter_configs([resource], validate_only=validate_only)[resource]

    alter(
        ConfigEntry("retention.ms", "5000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("flush.messages", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ).result(TIMEOUT)
    described = describe_topic(bootstrap, name)
    assert described["retention.ms"].value == "5000"
    assert described["flush.messages"].source == ConfigSource.DEFAULT_CONFIG.value
    assert described["cleanup.policy"].value == "delete,compact"
    assert described["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert kafka_broker.broker.replicas.partition(name, 0).log.config.compact

    # APPEND skips items already there.
    alter(ConfigEntry("cleanup.policy", "compact,delete", incremental_operation=AlterConfigOpType.APPEND)).result(
        TIMEOUT
    )
    assert describe_topic(bootstrap, name)["cleanup.policy"].value == "delete,compact"
    alter(ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT)).result(TIMEOUT)
    assert describe_topic(bootstrap, name)["cleanup.policy"].value == "compact"

    alter(ConfigEntry("retention.ms", "9", incremental_operation=AlterConfigOpType.SET), validate_only=True).result(
        TIMEOUT
    )
    assert describe_topic(bootstrap, name)["retention.ms"].value == "5000"

    err = confluent_error(alter(ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.APPEND)))
    assert err.code() == KafkaError.INVALID_CONFIG
    assert "because its type is not LIST" in err.str()
    err = confluent_error(alter(ConfigEntry("no.such.thing", "1", incremental_operation=AlterConfigOpType.SET)))
    assert err.code() == KafkaError.INVALID_CONFIG
    assert describe_topic(bootstrap, name)["retention.ms"].value == "5000"

    missing = unique("gone")
    resource = ConfigResource(
        ResourceType.TOPIC,
        missing,
        incremental_configs=[ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.SET)],
    )
    err = confluent_error(admin.incremental_alter_configs([resource])[resource])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_kafka_python_alter_configs_uses_incremental_api(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("kpincr")
    create(bootstrap, name, 1, {"retention.ms": "1000"})
    with kafka_python(bootstrap) as admin:
        result = admin.alter_configs(
            [
                KResource(
                    ConfigResourceType.TOPIC,
                    name,
                    {"segment.ms": "70000", "retention.ms": (AlterConfigOp.DELETE, None)},
                )
            ]
        )
        assert result == {"topic": {name: "OK"}}
        modified = admin.describe_configs([KResource(ConfigResourceType.TOPIC, name)])["topic"][name]
    assert sorted(modified) == ["segment.ms"] and modified["segment.ms"]["value"] == "70000"


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_broker_configs_are_static(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    resource = ConfigResource(
        ResourceType.BROKER,
        "1",
        incremental_configs=[ConfigEntry("log.retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)],
    )
    err = confluent_error(confluent(bootstrap).incremental_alter_configs([resource])[resource])
    assert err.code() == KafkaError.INVALID_REQUEST
    assert "Cannot update these configs dynamically" in err.str()
    resource = ConfigResource(ResourceType.BROKER, "1", set_config={"num.partitions": "3"})
    err = confluent_error(confluent(bootstrap).alter_configs([resource])[resource])
    assert err.code() == KafkaError.INVALID_REQUEST
    assert kafka_broker.broker.config["num.partitions"] == 1


# -- DescribeCluster / DescribeLogDirs ----------------------------------------------


def test_describe_cluster(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    desc = confluent(bootstrap).describe_cluster(include_authorized_operations=True).result(TIMEOUT)
    assert desc.cluster_id == kafka_broker.broker.metadata.cluster_id
    assert desc.controller.id == 1
    assert [(n.id, n.host, n.port) for n in desc.nodes] == [(1, kafka_broker.host, kafka_broker.port)]
    assert desc.authorized_operations  # no authorizer: everything allowed

    wire = Wire(bootstrap)
    try:
        wire.send(DescribeClusterRequest(endpoint_type=2), 1, 7)
        _, resp = wire.receive(ApiKey.DESCRIBE_CLUSTER, 1)
        assert resp.error_code == ErrorCode.MISMATCHED_ENDPOINT_TYPE
        wire.send(DescribeClusterRequest(endpoint_type=1), 1, 8)
        _, resp = wire.receive(ApiKey.DESCRIBE_CLUSTER, 1)
        assert resp.error_code == 0 and resp.endpoint_type == 1 and resp.cluster_authorized_operations == -(2**31)
    finally:
        wire.close()


def test_describe_log_dirs(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("dirs")
    create(bootstrap, name, 2)
    produce(bootstrap, name, 5, partition=1)
    with kafka_python(bootstrap) as admin:
        (everything,) = admin.describe_log_dirs()
        (only_p1,) = admin.describe_log_dirs({name: [1]})
    assert everything["broker"] == 1
    (log_dir,) = everything["log_dirs"]
    assert log_dir["error_code"] == 0
    assert log_dir["log_dir"] == os.path.abspath(kafka_broker.data_dir)
    topics = {t["name"]: t["partitions"] for t in log_dir["topics"]}
    sizes = {p["partition_index"]: p["partition_size"] for p in topics[name]}
    assert sizes[0] == 0 and sizes[1] == kafka_broker.broker.replicas.partition(name, 1).log.size_in_bytes > 0
    assert all(p["offset_lag"] == 0 and not p["is_future_key"] for p in topics[name])
    assert log_dir["total_bytes"] >= log_dir["usable_bytes"] > 0
    (filtered,) = only_p1["log_dirs"]
    assert [(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in filtered["topics"]] == [(name, [1])]


# -- OffsetForLeaderEpoch ------------------------------------------------------------


def test_offset_for_leader_epoch(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("epochs")
    create(bootstrap, name, 2)
    produce(bootstrap, name, 7)

    def ask(topic, partition, epoch, current=-1):
        req = OffsetForLeaderEpochRequest(
            replica_id=-1,
            topics=[
                OffsetForLeaderTopic(
                    topic=topic,
                    partitions=[
                        OffsetForLeaderPartition(partition=partition, current_leader_epoch=current, leader_epoch=epoch)
                    ],
                )
            ],
        )
        wire.send(req, 4, 1)
        (t,) = wire.receive(ApiKey.OFFSET_FOR_LEADER_EPOCH, 4)[1].topics
        (p,) = t.partitions
        return p.error_code, p.leader_epoch, p.end_offset

    wire = Wire(bootstrap)
    try:
        assert ask(name, 0, 0) == (0, 0, 7)
        assert ask(name, 1, 0) == (0, 0, 0)  # the current epoch ends at the log end, records or not
        assert ask(name, 0, 0, current=0) == (0, 0, 7)
        assert ask(name, 0, 3) == (0, -1, -1)
        assert ask(name, 0, 0, current=1)[0] == ErrorCode.UNKNOWN_LEADER_EPOCH
        assert ask(name, 9, 0)[0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert ask(unique("none"), 0, 0)[0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    finally:
        wire.close()


def test_epoch_end_offsets_when_the_leader_has_not_written(tmp_path):
    """Kafka's leader puts its epoch into the cache when elected; ours does
    on its first append, so a newer leader epoch is taken to start at the
    log end (the case a leader change on a quiet partition creates)."""
    from pybroker.storage.leader_epoch import LeaderEpochCache

    class Log:
        log_end_offset = 30
        epochs = LeaderEpochCache(tmp_path / "leader-epoch-checkpoint")

    Log.epochs.assign(0, 0)
    Log.epochs.assign(2, 10)
    assert end_offset_for(Log, 2, 2) == (2, 30)
    assert end_offset_for(Log, 2, 1) == (0, 10)
    assert end_offset_for(Log, 5, 5) == (5, 30)  # elected, nothing written yet
    assert end_offset_for(Log, 5, 3) == (2, 30)
    assert end_offset_for(Log, 5, 2) == (2, 30)
    assert end_offset_for(Log, 5, 1) == (0, 10)
    assert end_offset_for(Log, 5, 6) == (-1, -1)
    assert end_offset_for(Log, 5, -1) == (-1, -1)


# -- DeleteTopics --------------------------------------------------------------------


def _gone_then_recreate(bootstrap: str, broker, name: str, old_id) -> None:
    # Deletion is complete when DeleteTopics answers: no waiting.
    assert topic_metadata(bootstrap, name) is None
    assert broker.metadata.topic(name) is None
    assert not any(t == name for t, _ in broker.replicas.partitions)
    assert not any(t == name for t, _ in broker.logs.logs)
    assert not any(p.name.startswith(f"{name}-") for p in broker.config.log_dirs[0].iterdir())
    create(bootstrap, name, 1)
    assert broker.metadata.topic(name).topic_id != old_id
    assert earliest_and_latest(bootstrap, name) == (0, 0)


def test_delete_topic_with_each_client(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    broker = kafka_broker.broker
    names = [unique("del-confluent"), unique("del-kafka-python"), unique("del-aiokafka")]
    for name in names:
        create(bootstrap, name, 3)
        produce(bootstrap, name, 4, idempotent=True)
        assert broker.replicas.partition(name, 0).log.producers.entries
    ids = {name: broker.metadata.topic(name).topic_id for name in names}

    confluent(bootstrap).delete_topics([names[0]])[names[0]].result(TIMEOUT)
    with kafka_python(bootstrap) as admin:
        result = admin.delete_topics([names[1]])
        assert [(t["name"], t["error_code"]) for t in result["topics"]] == [(names[1], 0)]
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.delete_topics([names[1]])
    response = aiokafka(bootstrap, lambda a: a.delete_topics([names[2]]))
    assert [tuple(t[:2]) for t in response.topic_error_codes] == [(names[2], 0)]

    for name in names:
        _gone_then_recreate(bootstrap, broker, name, ids[name])


def test_fetch_session_reports_deleted_partitions(kafka_broker):
    """As with Kafka, a fetch session keeps a deleted topic's partitions and
    its next incremental fetch reports them, so the consumer finds out."""
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("session")
    create(bootstrap, name, 1)
    produce(bootstrap, name, 2)
    wire = Wire(bootstrap)
    try:
        part = FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)
        wire.send(
            FetchRequest(session_id=0, session_epoch=0, topics=[FetchTopic(topic=name, partitions=[part])]), 12, 1
        )
        _, opened = wire.receive(ApiKey.FETCH, 12)
        assert opened.error_code == 0 and opened.session_id != 0
        assert [p.error_code for t in opened.responses for p in t.partitions] == [0]
        confluent(bootstrap).delete_topics([name])[name].result(TIMEOUT)
        wire.send(FetchRequest(session_id=opened.session_id, session_epoch=1), 12, 2)
        _, after = wire.receive(ApiKey.FETCH, 12)
    finally:
        wire.close()
    assert [(t.topic, p.partition_index, p.error_code) for t in after.responses for p in t.partitions] == [
        (name, 0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    ]


def test_delete_unknown_topic(kafka_broker):
    name = unique("never")
    err = confluent_error(confluent(kafka_broker.bootstrap_servers).delete_topics([name])[name])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_delete_topic_by_id(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("byid")
    create(bootstrap, name, 1)
    topic_id = kafka_broker.broker.metadata.topic(name).topic_id
    wire = Wire(bootstrap)
    try:
        stranger = uuid.uuid4()
        wire.send(
            DeleteTopicsRequest(topics=[DeleteTopicState(topic_id=stranger), DeleteTopicState(topic_id=topic_id)]), 6, 1
        )
        _, resp = wire.receive(ApiKey.DELETE_TOPICS, 6)
        got = {r.topic_id: (r.name, r.error_code) for r in resp.responses}
        assert got == {stranger: (None, ErrorCode.UNKNOWN_TOPIC_ID), topic_id: (name, ErrorCode.NONE)}
        wire.send(DeleteTopicsRequest(topics=[DeleteTopicState(name=name, topic_id=topic_id)]), 6, 2)
        (r,) = wire.receive(ApiKey.DELETE_TOPICS, 6)[1].responses
        assert r.error_code == ErrorCode.INVALID_REQUEST
    finally:
        wire.close()
    _gone_then_recreate(bootstrap, kafka_broker.broker, name, topic_id)


def test_delete_disabled():
    with own_broker({"delete.topic.enable": "false"}) as broker:
        name = unique("kept")
        create(broker.bootstrap_servers, name, 1)
        err = confluent_error(confluent(broker.bootstrap_servers).delete_topics([name])[name])
        assert err.code() == KafkaError.TOPIC_DELETION_DISABLED
        assert topic_metadata(broker.bootstrap_servers, name) is not None
