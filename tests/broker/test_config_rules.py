"""Topic and broker configs under Kafka 4's rules, through real admin clients.

Every value Kafka's LogConfig refuses is refused at CreateTopics, AlterConfigs
and IncrementalAlterConfigs with INVALID_CONFIG and ConfigDef's message
naming the key and the rule; every topic config Kafka 4 defines is accepted,
stored, kept over a restart and described with its default; an empty
cleanup.policy (the empty list) means neither deletion nor compaction; a
broker property out of its range stops ``python -m pybroker`` with one line
naming the key.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewTopic, ResourceType
from kafka import KafkaProducer
from kafka.admin import ConfigResource as KResource
from kafka.admin import ConfigResourceType
from kafka.admin import NewTopic as KNewTopic
from kafka.errors import InvalidConfigurationError

from .test_admin import (
    TIMEOUT,
    confluent,
    confluent_error,
    create,
    describe_topic,
    earliest_and_latest,
    kafka_python,
    own_broker,
    topic_metadata,
    unique,
)
from .test_compaction import read_all
from .test_config_cli import run_cli

LONG_MAX = 2**63 - 1

# (key, value Kafka refuses, the rule as ConfigDef words it)
REFUSED = [
    ("segment.bytes", "2147483648", "Not a number of type INT"),
    ("flush.messages", "0", "Value must be at least 1"),
    ("flush.ms", "-1", "Value must be at least 0"),
    ("retention.ms", "-2", "Value must be at least -1"),
    ("retention.ms", str(2**63), "Not a number of type LONG"),
    ("index.interval.bytes", "-1", "Value must be at least 0"),
    ("delete.retention.ms", "-1", "Value must be at least 0"),
    ("min.compaction.lag.ms", "-1", "Value must be at least 0"),
    ("max.compaction.lag.ms", "0", "Value must be at least 1"),
    ("file.delete.delay.ms", "-1", "Value must be at least 0"),
    ("min.insync.replicas", "0", "Value must be at least 1"),
    ("compression.type", "bogus", "String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer"),
    ("message.timestamp.before.max.ms", "-1", "Value must be at least 0"),
    ("message.timestamp.after.max.ms", "-1", "Value must be at least 0"),
]

# Kafka 4 topic configs pybroker lacked: (key, Kafka's default, a valid other value)
NEW_KEYS = [
    ("segment.jitter.ms", "0", "60000"),
    ("leader.replication.throttled.replicas", "", "0:1,1:1"),
    ("follower.replication.throttled.replicas", "", "*"),
    ("compression.gzip.level", "-1", "6"),
    ("compression.lz4.level", "9", "12"),
    ("compression.zstd.level", "3", "-5"),
    ("local.retention.ms", "-2", "3600000"),
    ("local.retention.bytes", "-2", "1000000"),
    ("remote.storage.enable", "false", "false"),
    ("remote.log.copy.disable", "false", "true"),
    ("remote.log.delete.on.disable", "false", "true"),
    ("message.downconversion.enable", "true", "false"),
]


def alter_legacy(bootstrap: str, name: str, configs: dict) -> str:
    """kafka-python's AlterConfigs (the non-incremental API): "OK" or the error."""
    with kafka_python(bootstrap) as admin:
        result = admin.alter_configs(
            [KResource(ConfigResourceType.TOPIC, name, configs)], incremental=False, raise_on_unknown=False
        )
    return result["topic"][name]


def alter_incremental(bootstrap: str, name: str, *entries):
    resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=list(entries))
    return confluent(bootstrap).incremental_alter_configs([resource])[resource]


def set_op(key: str, value: str) -> ConfigEntry:
    return ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)


# -- refused values -------------------------------------------------------------


@pytest.mark.parametrize("key, value, rule", REFUSED, ids=[f"{k}={v}" for k, v, _ in REFUSED])
def test_refused_at_create_topics(kafka_broker, key, value, rule):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("refused")
    futures = confluent(bootstrap).create_topics([NewTopic(name, 1, 1, config={key: value})])
    err = confluent_error(futures[name])
    assert err.code() == KafkaError.INVALID_CONFIG
    assert err.str() == f"Invalid value {value} for configuration {key}: {rule}"
    with kafka_python(bootstrap) as admin, pytest.raises(InvalidConfigurationError, match=key):
        admin.create_topics([KNewTopic(name, 1, 1, topic_configs={key: value})])
    assert topic_metadata(bootstrap, name) is None


@pytest.mark.parametrize("key, value, rule", REFUSED, ids=[f"{k}={v}" for k, v, _ in REFUSED])
def test_refused_at_alter_configs(kafka_broker, key, value, rule):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("refalter")
    create(bootstrap, name, 1, {"retention.ms": "86400000"})
    before = {k: (e.value, e.source) for k, e in describe_topic(bootstrap, name).items()}
    message = f"Invalid value {value} for configuration {key}: {rule}"

    answer = alter_legacy(bootstrap, name, {key: value})
    assert "InvalidConfigurationError" in answer and message in answer

    err = confluent_error(alter_incremental(bootstrap, name, set_op(key, value)))
    assert err.code() == KafkaError.INVALID_CONFIG and err.str() == message

    assert {k: (e.value, e.source) for k, e in describe_topic(bootstrap, name).items()} == before


def test_cross_key_and_list_rules(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("rules")
    cases = {
        "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)": {
            "min.compaction.lag.ms": "10",
            "max.compaction.lag.ms": "5",
        },
        "Tiered Storage functionality is disabled in the broker.": {"remote.storage.enable": "true"},
        "Invalid value Delete for configuration cleanup.policy: String must be one of: compact, delete": {
            "cleanup.policy": "Delete"
        },
        "Invalid value 0 for configuration compression.gzip.level: Value must be between 1 and 9 or equal to -1": {
            "compression.gzip.level": "0"
        },
        "leader.replication.throttled.replicas must be the literal '*' or a list of replicas": {
            "leader.replication.throttled.replicas": "0:one"
        },
    }
    for message, configs in cases.items():
        err = confluent_error(confluent(bootstrap).create_topics([NewTopic(name, 1, 1, config=configs)])[name])
        assert err.code() == KafkaError.INVALID_CONFIG and message in err.str(), (configs, err.str())
    assert topic_metadata(bootstrap, name) is None


# -- newly accepted keys -------------------------------------------------------------


def test_kafka_4_topic_configs_are_described_with_their_defaults(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("defaults")
    create(bootstrap, name, 1)
    described = describe_topic(bootstrap, name)
    for key, default, _ in NEW_KEYS:
        assert described[key].value == default, key
        assert described[key].source == ConfigSource.DEFAULT_CONFIG.value, key
        assert not described[key].is_read_only


def test_kafka_4_topic_configs_are_stored_and_survive_a_restart(broker_process):
    broker = broker_process()
    configs = {key: value for key, _, value in NEW_KEYS}
    name = unique("newkeys")
    create(broker.bootstrap, name, 1, configs)
    other = unique("altered")
    create(broker.bootstrap, other, 1)
    alter_incremental(broker.bootstrap, other, *(set_op(k, v) for k, v in configs.items())).result(TIMEOUT)
    assert alter_legacy(broker.bootstrap, other, configs) == "OK"
    broker.restart()
    for topic in (name, other):
        with kafka_python(broker.bootstrap) as admin:
            described = admin.describe_configs([KResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
        entries = described["topic"][topic]
        for key, value in configs.items():
            assert entries[key]["value"] == value, (topic, key)
            assert entries[key]["config_source"] == "DYNAMIC_TOPIC_CONFIG", (topic, key)


def test_segment_jitter_reaches_the_partition_log(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    name = unique("jitter")
    create(bootstrap, name, 1, {"segment.ms": "100000", "segment.jitter.ms": "60000"})
    cfg = kafka_broker.broker.replicas.partition(name, 0).log.config
    assert (cfg.segment_ms, cfg.segment_jitter_ms) == (100000, 60000)
    assert 0 <= cfg.roll_jitter_ms(0) < 60000


# -- empty cleanup.policy ------------------------------------------------------------------


def test_empty_cleanup_policy_at_create_alter_and_subtract(kafka_broker):
    bootstrap = kafka_broker.bootstrap_servers
    created = unique("nopolicy")
    create(bootstrap, created, 1, {"cleanup.policy": ""})
    assert describe_topic(bootstrap, created)["cleanup.policy"].value == ""
    assert kafka_broker.broker.replicas.partition(created, 0).log.config.cleanup_policy == frozenset()

    legacy = unique("legacy-nopolicy")
    create(bootstrap, legacy, 1)
    assert alter_legacy(bootstrap, legacy, {"cleanup.policy": ""}) == "OK"
    assert describe_topic(bootstrap, legacy)["cleanup.policy"].value == ""

    subtracted = unique("subtract")
    create(bootstrap, subtracted, 1, {"cleanup.policy": "compact"})
    op = ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SUBTRACT)
    alter_incremental(bootstrap, subtracted, op).result(TIMEOUT)
    described = describe_topic(bootstrap, subtracted)["cleanup.policy"]
    assert (described.value, described.source) == ("", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    log_config = kafka_broker.broker.replicas.partition(subtracted, 0).log.config
    assert not log_config.delete and not log_config.compact


def _produce_keyed(bootstrap: str, topic: str, count: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0, batch_size=1)
    try:
        for i in range(count):
            producer.send(topic, key=b"same-key", value=b"v%d" % i, partition=0).get(TIMEOUT)
    finally:
        producer.close(10)


def _wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.05)  # polling the broker's state, bounded by the deadline


def test_empty_cleanup_policy_keeps_data_past_retention_and_is_not_compacted():
    props = {"log.retention.check.interval.ms": "50", "log.cleaner.backoff.ms": "50"}
    with own_broker(props) as broker:
        bootstrap = broker.bootstrap_servers
        # Same small segments and 1 ms retention; only the policy differs.
        small = {"segment.bytes": "200", "retention.ms": "1", "min.cleanable.dirty.ratio": "0.01"}
        kept, deleted, compacted = unique("kept"), unique("deleted"), unique("compacted")
        create(bootstrap, kept, 1, {**small, "cleanup.policy": ""})
        create(bootstrap, deleted, 1, {**small, "cleanup.policy": "delete"})
        create(bootstrap, compacted, 1, {**small, "cleanup.policy": "compact"})
        for topic in (kept, deleted, compacted):
            _produce_keyed(bootstrap, topic, 30)

        # Retention and the cleaner have run since the kept topic's data expired.
        _wait_for(lambda: earliest_and_latest(bootstrap, deleted)[0] > 0, "retention deleted old segments")
        plog = broker.broker.replicas.partition(compacted, 0).log
        _wait_for(lambda: plog.cleaner_offset > 0, "the cleaner compacted the compacted topic")
        assert len(read_all(bootstrap, compacted, 30)) < 30

        assert earliest_and_latest(bootstrap, kept) == (0, 30)
        assert len(broker.broker.replicas.partition(kept, 0).log.segments) > 1
        records = read_all(bootstrap, kept, 30)
        assert [(offset, value) for offset, _, value in records] == [(i, b"v%d" % i) for i in range(30)]


# -- broker properties -------------------------------------------------------------------


@pytest.mark.parametrize(
    "prop, value, message",
    [
        (
            "log.segment.bytes",
            "4096",
            "Invalid value 4096 for configuration log.segment.bytes: Value must be at least 1048576",
        ),
        ("log.segment.bytes", "2147483648", "log.segment.bytes: Not a number of type INT"),
        ("min.insync.replicas", "0", "configuration min.insync.replicas: Value must be at least 1"),
        ("log.cleanup.policy", "shred", "configuration log.cleanup.policy: String must be one of: compact, delete"),
        ("compression.type", "bogus", "configuration compression.type: String must be one of"),
        ("log.message.timestamp.type", "createtime", "log.message.timestamp.type: String must be one of"),
        ("log.retention.ms", "0", "log.retention.ms must be unlimited (-1) or, greater than or equal to 1"),
        ("log.flush.interval.messages", "0", "log.flush.interval.messages: Value must be at least 1"),
        ("log.cleaner.min.cleanable.ratio", "1.5", "log.cleaner.min.cleanable.ratio: Value must be no more than 1"),
        ("log.roll.hours", "0", "log.roll.hours: Value must be at least 1"),
        ("queued.max.requests", "0", "queued.max.requests: Value must be at least 1"),
        ("offsets.topic.replication.factor", "40000", "offsets.topic.replication.factor: Not a number of type SHORT"),
        ("group.consumer.heartbeat.interval.ms", "45000", "group.consumer.heartbeat.interval.ms must be less than"),
    ],
)
def test_broker_property_out_of_range_stops_the_broker(tmp_path, prop, value, message):
    data = tmp_path / "data"
    args = ["--override", "listeners=PLAINTEXT://127.0.0.1:0", "--override", f"log.dirs={data}"]
    out = run_cli(*args, "--override", f"{prop}={value}")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and prop in lines[0] and message in lines[0], lines
    assert not data.exists()
