"""``pybroker produce`` and ``pybroker consume`` (assign mode) against one
broker, cross-checked with real clients: what the CLI writes,
confluent-kafka reads; what kafka-python writes, the CLI prints."""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Consumer
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from .conftest import cli, unique


def _create(run, bs, topic, partitions=1):
    assert run("topics", "create", "--topic", topic, "--partitions", str(partitions), *bs).code == 0


def _read_all(bootstrap, topic, n, timeout=20):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                got.append(m)
    finally:
        consumer.close()
    return got


def test_keys_and_headers_from_stdin_reach_confluent_kafka(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    topic = unique("keys")
    _create(run, bs, topic, partitions=4)
    lines = "".join(f"key{i}:value {i}\n" for i in range(20))
    produced = cli("produce", "--topic", topic, "--property", "parse.key=true", "--property", "key.separator=:",
                   "--header", "app=cli", "--header", "n=1=2", *bs, input=lines)
    assert (produced.code, produced.err) == (0, ""), produced.err
    got = _read_all(broker.bootstrap_servers, topic, 20)
    assert sorted((m.key(), m.value()) for m in got) == sorted(
        (f"key{i}".encode(), f"value {i}".encode()) for i in range(20))
    assert all(m.headers() == [("app", b"cli"), ("n", b"1=2")] for m in got)
    # The partition of each key is the Java client's (murmur2), as kafka-python computes it.
    for m in got:
        assert m.partition() == (murmur2(m.key()) & 0x7FFFFFFF) % 4


def test_kcat_separator_partition_and_acks(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    topic = unique("kcat")
    _create(run, bs, topic, partitions=3)
    assert run("produce", "--topic", topic, "-K", "|", "--partition", "2", "--acks", "1", "a|1", "b|2", *bs).code == 0
    assert run("produce", "--topic", topic, "--partition", "2", "--acks", "0", "c", *bs).code == 0
    out = run("consume", "--topic", topic, "--partition", "2", "--from-beginning", "--max-messages", "3",
              "--property", "print.key=true", "--property", "key.separator=|", *bs)
    assert out.out.splitlines() == ["a|1", "b|2", "null|c"]
    assert out.err == "Processed a total of 3 messages\n"
    missing = run("produce", "--topic", topic, "-K", "|", "no separator", *bs)
    assert missing.code == 1 and missing.err.startswith("pybroker: INVALID_RECORD: no key separator")
    no_partition = run("produce", "--topic", topic, "--partition", "7", "x", *bs)
    assert no_partition.code == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in no_partition.err


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_compression(broker, run, codec):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    topic = unique(f"codec-{codec}")
    _create(run, bs, topic)
    values = [f"{codec} record {i} " * 20 for i in range(50)]
    assert run("produce", "--topic", topic, "--compression-type", codec, *values, *bs).code == 0
    got = _read_all(broker.bootstrap_servers, topic, 50)
    assert [m.value().decode() for m in got] == values


def test_kafka_python_records_printed_as_json_lines(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    topic = unique("json")
    _create(run, bs, topic)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    producer.send(topic, key=b"k", value=b"text", headers=[("h", b"v"), ("bin", b"\xff\x00")], timestamp_ms=1000)
    producer.send(topic, key=None, value=b"\xff\xfe", timestamp_ms=2000)
    producer.send(topic, key=b"tomb", value=None, timestamp_ms=3000)
    producer.flush()
    producer.close()
    result = cli("consume", "--topic", topic, "--from-beginning", "--max-messages", "3", "--format", "json", *bs)
    assert result.code == 0, result.err
    records = [json.loads(line) for line in result.out.splitlines()]
    assert records[0] == {"topic": topic, "partition": 0, "offset": 0, "timestamp": 1000,
                          "timestamp_type": "CreateTime", "key": "k", "value": "text",
                          "headers": [{"key": "h", "value": "v"},
                                      {"key": "bin", "value": "/wA=", "value_encoding": "base64"}]}
    assert (records[1]["key"], records[1]["value"], records[1]["value_encoding"]) == (None, "//4=", "base64")
    assert (records[2]["key"], records[2]["value"]) == ("tomb", None)

    text = run("consume", "--topic", topic, "--from-beginning", "--max-messages", "1", "--property",
               "print.timestamp=true", "--property", "print.offset=true", "--property", "print.partition=true",
               "--property", "print.headers=true", "--property", "print.key=true", *bs)
    assert text.out == "CreateTime:1000\tPartition:0\tOffset:0\th:v,bin:\\xff\x00\tk\ttext\n"


def test_start_positions(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    topic = unique("start")
    _create(run, bs, topic)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    for i in range(6):
        producer.send(topic, value=b"%d" % i, timestamp_ms=10_000 * (i + 1))
    producer.flush()
    producer.close()

    def values(*args):
        result = run("consume", "--topic", topic, "--timeout-ms", "700", *args, *bs)
        assert result.code == 0, result.err
        return result.out.split()

    assert values("--from-beginning") == ["0", "1", "2", "3", "4", "5"]
    assert values("--offset", "earliest", "--max-messages", "2") == ["0", "1"]
    assert values("--offset", "4") == ["4", "5"]
    assert values("--offset", "-2") == ["4", "5"]
    assert values("--timestamp", "30000") == ["2", "3", "4", "5"]
    assert values("--timestamp", "99999999") == []
    assert values() == []  # the default start is the end, as Kafka's console consumer
    assert values("--offset", "latest") == []


def test_consume_refusals(broker, run):
    bs = ("--bootstrap-server", broker.bootstrap_servers)
    unknown = cli("consume", "--topic", unique("absent"), "--max-messages", "1", *bs)
    assert unknown.code == 1
    assert unknown.err.startswith("pybroker: UNKNOWN_TOPIC_OR_PARTITION: ")
    both = cli("consume", "--topic", "t", "--from-beginning", "--offset", "3", *bs)
    assert both.code == 2 and "not allowed with" in both.err
    assert run("consume", "--topic", "t", "--offset", "middle", *bs).code in (1, 2)
