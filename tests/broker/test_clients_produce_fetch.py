"""Real clients produce to pybroker and read back what they wrote.

kafka-python, confluent-kafka (librdkafka) and aiokafka each produce keyed
messages with headers (empty, null, repeated) under every compression codec
and every acks setting, then read them back with assign() from the
beginning. What comes back must be byte-identical, in send order per
partition, every key in one partition (the client's own partitioner), at the
offsets the producer was told; offsets by time and the beginning/end offsets
must agree with what was written. The codec each batch was stored with is
checked on disk, so a client that silently dropped compression is caught.
"""

from __future__ import annotations

import logging
import time
import zlib

import pytest

from pybroker.testing import running_broker

from .clients import CLIENTS, Confluent, KafkaPython
from .workload import batches_on_disk, check_round_trip, codec_name, make_messages, unique_topic

PARTITIONS = 6
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
ACKS = ["0", "1", "all"]


@pytest.fixture(scope="module")
def broker():
    # Each test creates its topic with the client's own admin client
    # (CreateTopics); auto-creation would give one partition, and every
    # round trip checks that all six were used.
    with running_broker({"num.partitions": "1"}) as b:
        yield b


def null_headers_ok(client_name: str) -> bool:
    # kafka-python's producer refuses (str, None) headers client-side
    # ("All headers items must be (str, bytes) tuples"); the others send them.
    return client_name != "kafka-python"


def codecs_on_disk(broker, topic: str) -> list[str]:
    return [codec_name(b.compression) for _, b in batches_on_disk(broker.data_dir, topic)]


def check_codec_on_disk(broker, topic: str, codec: str) -> None:
    # librdkafka turns LZ4 on only when the broker advertises FindCoordinator
    # (CLIENTS.md §5.1); without it, it sends "lz4" batches uncompressed.
    codecs = codecs_on_disk(broker, topic)
    # All three clients send a batch uncompressed when compressing does not
    # shrink it (a lone small record); most batches here do shrink.
    assert set(codecs) <= {codec, "none"}, set(codecs)
    assert codecs.count(codec) * 2 > len(codecs), f"only {codecs.count(codec)} of {len(codecs)} batches use {codec}"


def check_offsets(client, topic: str, per_partition) -> None:
    """Beginning and end offsets; offsets_for_times hits an exact message in
    even partitions and lies past the last message in odd ones."""
    timestamps, expected = {}, {}
    for p in range(PARTITIONS):
        msgs = per_partition.get(p, [])
        if p % 2 == 0 and msgs:
            mid = len(msgs) // 2
            timestamps[p], expected[p] = msgs[mid].timestamp, mid
        else:
            timestamps[p], expected[p] = (msgs[-1].timestamp + 1 if msgs else 0), None
    begin, end, by_time = client.offsets(topic, PARTITIONS, timestamps)
    assert begin == {p: 0 for p in range(PARTITIONS)}
    assert end == {p: len(per_partition.get(p, [])) for p in range(PARTITIONS)}
    assert by_time == expected


def round_trip(broker, client_name: str, n: int, codec: str, acks: str, seed: int, **producer_config):
    client = CLIENTS[client_name](broker.bootstrap_servers)
    topic = unique_topic(f"rt-{client_name}-{codec}-{acks}")
    client.create_topic(topic, PARTITIONS)
    messages = make_messages(n, seed, null_header_values=null_headers_ok(client_name))
    delivered = client.produce(topic, messages, codec, acks, **producer_config)
    consumed = client.consume(topic, PARTITIONS, len(messages))
    per_partition = check_round_trip(messages, delivered, consumed, PARTITIONS, client.partitioner, acked=acks != "0")
    assert len(per_partition) == PARTITIONS, "the workload should reach every partition"
    check_codec_on_disk(broker, topic, codec)
    check_offsets(client, topic, per_partition)
    return topic, messages


@pytest.mark.parametrize("acks", ACKS)
@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("client_name", list(CLIENTS))
def test_round_trip(broker, client_name, codec, acks):
    round_trip(broker, client_name, 200, codec, acks, seed=zlib.crc32(f"{client_name}{codec}{acks}".encode()))


@pytest.mark.parametrize(
    "client_name, codec",
    [("kafka-python", "lz4"), ("confluent-kafka", "zstd"), ("aiokafka", "snappy")],
)
def test_ten_thousand_messages(broker, client_name, codec):
    """The issue's volume: 10,000 messages per client with acks=all and the
    client's idempotent producer (kafka-python's default in 3.x)."""
    config = {"enable.idempotence": True} if client_name == "confluent-kafka" else {}
    topic, _ = round_trip(broker, client_name, 10_000, codec, "all", seed=10_000, **config)

    # DeleteRecords moves the log start; then DeleteTopics removes the topic.
    client = CLIENTS[client_name](broker.bootstrap_servers)
    begin, end, _ = client.offsets(topic, PARTITIONS, {})
    cut = {0: end[0] // 2, 1: end[1]}
    assert client.delete_records(topic, cut) == cut
    begin, end_after, _ = client.offsets(topic, PARTITIONS, {})
    assert begin == {p: cut.get(p, 0) for p in range(PARTITIONS)} and end_after == end
    rest = client.consume(topic, PARTITIONS, sum(end.values()) - sum(cut.values()))
    assert min(c.offset for c in rest if c.partition == 0) == cut[0]
    assert not [c for c in rest if c.partition == 1]
    client.delete_topic(topic)
    assert topic not in client.topics()


@pytest.mark.parametrize("reader", ["kafka-python", "aiokafka"])
def test_other_clients_read_what_librdkafka_wrote(broker, reader):
    """Batches written by librdkafka (null header values, zstd) read by the
    pure-Python clients, byte for byte."""
    topic = unique_topic("cross")
    writer = Confluent(broker.bootstrap_servers)
    writer.create_topic(topic, PARTITIONS)
    messages = make_messages(300, seed=7)
    delivered = writer.produce(topic, messages, "zstd", "all")
    client = CLIENTS[reader](broker.bootstrap_servers)
    consumed = client.consume(topic, PARTITIONS, len(messages))
    check_round_trip(messages, delivered, consumed, PARTITIONS, Confluent.partitioner, acked=True)


def test_kafka_python_incremental_fetch_session(broker, caplog):
    """kafka-python keeps a fetch session (KIP-227) across polls: its second
    fetch carries epoch 1 and must be accepted, not answered with
    INVALID_FETCH_SESSION_EPOCH (the client then falls back to full fetches
    and logs it), and what is produced later arrives through the
    incremental fetches."""
    from kafka import TopicPartition

    client = KafkaPython(broker.bootstrap_servers)
    topic = unique_topic("session")
    client.create_topic(topic, PARTITIONS)
    messages = make_messages(120, seed=1, null_header_values=False)
    client.produce(topic, messages[:60], "none", "1")
    caplog.set_level(logging.INFO, logger="kafka.consumer.fetcher")
    consumer = client.consumer()
    got = []

    def poll_until(n):
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=100).values():
                got.extend(r.value for r in records)

    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        poll_until(60)
        client.produce(topic, messages[60:], "none", "1")
        poll_until(120)
    finally:
        consumer.close()
    assert sorted(got, key=repr) == sorted((m.value for m in messages), key=repr)
    session_errors = [r.getMessage() for r in caplog.records if "FetchSession" in r.getMessage()]
    assert not session_errors, session_errors
