"""Kafka's configuration files, as a Kafka user brings them: Java's
properties syntax, Kafka's own sample ``server.properties`` of 3.x
(ZooKeeper) and 4.x (KRaft) starting pybroker with warnings only, every
problem of a file reported at once, Kafka's listener rules, environment
variables only for keys that exist, ``--list-properties``."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from pybroker.config import BROKER_PROPERTIES, BrokerConfig, ConfigError
from pybroker.kafka_keys import KAFKA_BROKER_KEYS
from pybroker.process import free_port
from pybroker.properties import PropertiesError, loads, parse

# -- Java's properties syntax ----------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("a=1\nb = 2\nc:3\nd 4\n  e\t=\t5  \n", {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5  "}),
        ("key\n", {"key": ""}),
        ("key = a \\\n     b\\\n c\n", {"key": "a bc"}),  # leading whitespace of a continuation dropped
        ("# a comment \\\nkey=1\n! another\n", {"key": "1"}),  # a comment never continues
        ("key=ends\\\\\n", {"key": "ends\\"}),  # an even number of backslashes: no continuation
        ("k\\=ey=v\\:al\n", {"k=ey": "v:al"}),
        ("k\\ ey = x\n", {"k ey": "x"}),
        ("tab=\\t|\\n|\\r|\\f|\\q\n", {"tab": "\t|\n|\r|\f|q"}),
        ("u=\\u00e9t\\u00E9\n", {"u": "été"}),
        ("pair=\\ud83d\\ude00\n", {"pair": "\U0001f600"}),
        ("a==b\n", {"a": "=b"}),
        ("a = : b\n", {"a": ": b"}),
        ("crlf=1\r\ncr=2\rlast=3", {"crlf": "1", "cr": "2", "last": "3"}),
        ("dangling=x\\", {"dangling": "x"}),
        ("twice=1\ntwice=2\n", {"twice": "2"}),
        ("a=1\\\n\nb=2\n", {"a": "1", "b": "2"}),
    ],
)
def test_java_properties_syntax(text, expected):
    assert loads(text) == expected


def test_entries_keep_their_first_line():
    assert [(n, k) for n, k, _ in parse("# head\n\na = 1 \\\n  2\nb=3\n")] == [(3, "a"), (5, "b")]


def test_a_malformed_unicode_escape_is_refused():
    with pytest.raises(PropertiesError, match="line 2"):
        parse("ok=1\nbad=\\u12x4\n")


# -- Kafka's sample files -----------------------------------------------------------

# The active keys of Kafka 3.9's config/server.properties (ZooKeeper mode),
# machine-specific values replaced by the test.
KAFKA_3_SAMPLE = """
broker.id=0
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs={log_dirs}
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.retention.check.interval.ms=300000
zookeeper.connect={zookeeper}
zookeeper.connection.timeout.ms=18000
group.initial.rebalance.delay.ms=0
listeners=PLAINTEXT://127.0.0.1:{port}
"""

# The active keys of Kafka 4's config/server.properties (KRaft, combined
# broker and controller), listeners on 127.0.0.1 instead of every interface.
KAFKA_4_SAMPLE = """
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs={log_dirs}
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
"""


def sample_keys(text: str) -> set[str]:
    return {line.split("=", 1)[0] for line in text.split("\n") if "=" in line}


def test_every_sample_key_is_kafkas():
    for sample in (KAFKA_3_SAMPLE, KAFKA_4_SAMPLE):
        assert sample_keys(sample) <= KAFKA_BROKER_KEYS


def run_sample(tmp_path, text: str) -> str:
    """Start ``pybroker -c`` on the file, round-trip a message with
    librdkafka in a new group, stop the broker by its PID: its log."""
    port = free_port()
    path = tmp_path / "server.properties"
    path.write_text(
        "# Kafka's sample, as shipped\n"
        + text.format(port=port, controller_port=free_port(), log_dirs=tmp_path / "data", zookeeper="{zookeeper}")
    )
    log_path = tmp_path / "broker.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pybroker", "-c", str(path)], stderr=log, stdout=log)
    try:
        bootstrap = f"127.0.0.1:{port}"
        topic, group = f"sample-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
        producer = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 30000})
        producer.produce(topic, b"from a Kafka sample config")
        assert producer.flush(40) == 0, log_path.read_text()
        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
        )
        try:
            consumer.subscribe([topic])
            deadline = time.monotonic() + 40
            message = None
            while message is None and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is not None and message.error():
                    message = None
            assert message is not None and message.value() == b"from a Kafka sample config"
        finally:
            consumer.close()
    finally:
        proc.terminate()
        proc.wait(30)
    return log_path.read_text()


def test_kafka_4_sample_starts_a_single_node_with_warnings_only(tmp_path):
    log = run_sample(tmp_path, KAFKA_4_SAMPLE)
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    assert any("ignoring Kafka properties pybroker does not use: " in w and "process.roles" in w for w in warnings)
    assert any("listener CONTROLLER is a KRaft controller listener" in w for w in warnings)
    assert " ERROR " not in log and "Traceback" not in log


def test_kafka_3_sample_starts_in_zookeeper_mode_with_warnings_only(tmp_path, zk_connect):
    text = KAFKA_3_SAMPLE.replace("{zookeeper}", zk_connect)
    config = BrokerConfig(
        loads(text.format(port=0, log_dirs=tmp_path / "unused", controller_port=0))
    )
    assert config.cluster_mode
    assert set(config.ignored) == sample_keys(KAFKA_3_SAMPLE) - set(BROKER_PROPERTIES)
    assert {"num.network.threads", "num.io.threads"} <= set(config.ignored)
    log = run_sample(tmp_path, text)
    assert "ignoring Kafka properties pybroker does not use: " in log
    assert " ERROR " not in log and "Traceback" not in log


def test_a_file_with_two_bad_keys_reports_both(tmp_path):
    path = tmp_path / "server.properties"
    path.write_text("num.partitions=3\nlog.dirz=/x\nnum.io.threads=8\nlog.segment.bytes=12\n")
    with pytest.raises(ConfigError) as caught:
        BrokerConfig.load(path, environ={})
    assert caught.value.problems == [
        "unknown property 'log.dirz' (server.properties line 2)",
        (
            "Invalid value 12 for configuration log.segment.bytes: Value must be at least 1048576"
            " (server.properties line 4)"
        ),
    ]
    out = subprocess.run(
        [sys.executable, "-m", "pybroker", "-c", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("pybroker: configuration error: ") for line in lines)
    assert "log.dirz" in lines[0] and "log.segment.bytes" in lines[1]


@pytest.mark.parametrize(
    "props",
    [
        {"num.partitions": "0"},
        {"offsets.retention.minutes": "-1"},
        {"log.retention.check.interval.ms": "0"},
        {"log.segment.bytes": "-1"},
        {"queued.max.requests": "0"},
        {"log.cleaner.min.cleanable.ratio": "1.5"},
    ],
)
def test_values_out_of_range_are_refused(props):
    with pytest.raises(ConfigError, match="Invalid value"):
        BrokerConfig(props)


def test_negative_retention_means_unlimited_as_in_kafka():
    assert BrokerConfig({"log.retention.hours": "-5"}).log_config.retention_ms == -1


# -- listeners ---------------------------------------------------------------------------


def test_named_listener_mapped_to_plaintext():
    config = BrokerConfig(
        {
            "listeners": "INTERNAL://127.0.0.1:9192",
            "listener.security.protocol.map": "INTERNAL:PLAINTEXT",
            "inter.broker.listener.name": "INTERNAL",
        }
    )
    assert config.advertised_listener.name == "INTERNAL" and config.advertised_listener.port == 9192


@pytest.mark.parametrize(
    "props,message",
    [
        ({"listeners": "PLAINTEXT://0.0.0.0:9092"}, "cannot use the nonroutable meta-address 0.0.0.0"),
        (
            {"listeners": "PLAINTEXT://0.0.0.0:9092", "advertised.listeners": "PLAINTEXT://0.0.0.0:9092"},
            "nonroutable meta-address",
        ),
        ({"listeners": "OUTSIDE://127.0.0.1:9092"}, "No security protocol defined for listener OUTSIDE"),
        (
            {"listeners": "INTERNAL://127.0.0.1:9092", "listener.security.protocol.map": "INTERNAL:PLAINTEXT"},
            "inter.broker.listener.name must be a listener name defined in advertised.listeners",
        ),
        (
            {"inter.broker.listener.name": "PLAINTEXT", "security.inter.broker.protocol": "PLAINTEXT"},
            "Only one of inter.broker.listener.name and security.inter.broker.protocol",
        ),
        (
            {"listeners": "PLAINTEXT://127.0.0.1:9092", "advertised.listeners": "OTHER://h:1"},
            "must be equal to or a subset of the ones defined in listeners",
        ),
        ({"listeners": "PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2"}, "must have a different name"),
        ({"listeners": "SSL://127.0.0.1:9093", "security.inter.broker.protocol": "SSL"},
         "the brokers check each other.s certificates against a truststore"),
        ({"listener.security.protocol.map": "A:TLS"}, "listener.security.protocol.map"),
        ({"listeners": "127.0.0.1:9092"}, "Unable to parse 127.0.0.1:9092 to a broker endpoint"),
    ],
)
def test_listener_rules_are_kafkas(props, message):
    with pytest.raises(ConfigError, match=message):
        BrokerConfig(props)


def test_a_listener_without_host_binds_everywhere_and_advertises_the_host_name():
    config = BrokerConfig({"listeners": "PLAINTEXT://:9092"})
    (bound,) = config.listeners
    assert bound.bind_host is None
    assert config.advertised_listener.advertised_host == socket.getfqdn()


# -- environment and the property list -----------------------------------------------------


def test_environment_reads_only_keys_that_exist():
    config = BrokerConfig.load(
        environ={"PYBROKER_NUM_PARTITIONS": "4", "PYBROKER_ZOOKEEPER_JAR": "/x", "PYBROKER_NUM_IO_THREADS": "8"}
    )
    assert config["num.partitions"] == 4
    assert config.ignored == {"num.io.threads": "8"}


def test_list_properties_prints_every_key_with_default_and_doc():
    out = subprocess.run(
        [sys.executable, "-m", "pybroker", "--list-properties"], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:] if line.strip()}
    for name, key in BROKER_PROPERTIES.items():
        assert key.doc in rows[name]
    assert "log.segment.bytes" in rows and "1073741824" in rows["log.segment.bytes"]
