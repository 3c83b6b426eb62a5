"""Record batches whose headers are fine but whose records lie, sent over
a real socket: each kind gets Kafka's error code (record_errors where Kafka
names records), nothing of it is stored (the log end does not move), and a
librdkafka consumer then reads exactly the valid records, without an error.
Run with the C record scanner and with the Python one, and with every
compressed batch checked in a worker thread (the connection holding its
next request meanwhile, in order)."""

from __future__ import annotations

import gzip
import random
import struct
import time

import crc32c
import lz4.frame
import pytest
import zstandard
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pybroker.protocol.compression import Compression
from pybroker.protocol.framing import encode_request
from pybroker.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
from pybroker.testing import running_broker

from ..forged import fields, forge, record, records_of, varint
from .test_bad_input import Conn, log_end, produce_request

INVALID_RECORD, CORRUPT_MESSAGE, MESSAGE_TOO_LARGE, INVALID_TIMESTAMP = 87, 2, 10, 32
UNSUPPORTED_COMPRESSION_TYPE = 76
HOUR = 3_600_000
TOPICS = {
    "plain": {},
    "compacted": {"cleanup.policy": "compact"},
    "appendtime": {"message.timestamp.type": "LogAppendTime"},
    "strict-time": {"message.timestamp.before.max.ms": str(HOUR), "message.timestamp.after.max.ms": str(HOUR)},
    "small": {"max.message.bytes": str(64 * 1024)},
}


@pytest.fixture(scope="module")
def broker():
    with running_broker({"num.partitions": "1"}) as b:
        yield b


@pytest.fixture(params=["c", "python"])
def scanner(request, monkeypatch):
    """Which record scanner the broker uses (the code before the record
    checks had none: then both runs test the same thing)."""
    try:
        from pybroker.protocol import record_scan
    except ImportError:
        return request.param
    if request.param not in record_scan.IMPLEMENTATIONS:
        pytest.skip("the C scanner is not built here (python setup.py build_ext --inplace)")
    monkeypatch.setattr(record_scan, "scan", record_scan.IMPLEMENTATIONS[request.param])
    return request.param


def create_topics(broker, suffix: str) -> dict[str, str]:
    names = {kind: f"{kind}-{suffix}" for kind in TOPICS}
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    futures = admin.create_topics([NewTopic(names[k], 1, 1, config=c) for k, c in TOPICS.items()])
    for future in futures.values():
        future.result(30)
    return names


class Client(Conn):
    def produce(self, topic: str, batch: bytes, version: int = 9):
        (partition,) = self.request(produce_request(topic, batch, acks=1), version).responses[0].partition_responses
        return partition

    def log_end(self, topic: str) -> int:
        return log_end(self, topic)


def now_ms() -> int:
    return int(time.time() * 1000)


def valid(values: list[bytes], codec=Compression.NONE) -> bytes:
    return forge(records_of(*(fields(offset=i, value=v) for i, v in enumerate(values))), len(values), codec,
                 base_ts=now_ms())


def legacy(magic: int) -> bytes:
    """One message in the pre-0.11 format Kafka's LegacyRecord writes."""
    body = struct.pack(">bb", magic, 0) + (struct.pack(">q", now_ms()) if magic else b"") + struct.pack(">ii", -1, 1) + b"v"
    message = struct.pack(">I", crc32c.crc32c(body)) + body
    return struct.pack(">qi", 0, len(message)) + message


def raw_compressed(codec, body: bytes, count: int = 1) -> bytes:
    return forge(body, count, codec, base_ts=now_ms(), raw_body=True)


def zstd_bomb_record(value_size: int) -> bytes:
    head = b"\x00\x00\x00\x02k" + varint(value_size)
    payload = varint(len(head) + value_size + 1) + head + bytes(value_size) + b"\x00"
    return zstandard.ZstdCompressor(level=3).compress(payload)


def lying_batches():
    """(id, topic kind, batch, produce version, expected code, record_errors indexes or None)."""
    f = fields
    t = now_ms()
    garbage = bytes(random.Random(7).randrange(256) for _ in range(400))
    body = records_of(f())
    many = records_of(*(f(offset=i, value=bytes(range(256)) * 4) for i in range(100)))
    cases = [
        ("too-few-records", "plain", forge(records_of(f()), 2, base_ts=t), 9, INVALID_RECORD, None),
        ("too-many-records", "plain", forge(records_of(f(offset=0), f(offset=1)), 1, base_ts=t), 9, INVALID_RECORD, None),
        ("bytes-after-records", "plain", forge(records_of(f()) + b"\x00\x00", 1, base_ts=t), 9, INVALID_RECORD, None),
        ("count-2147483647", "plain", forge(records_of(f()), 2**31 - 1, base_ts=t), 9, INVALID_RECORD, None),
        ("count-0", "plain", forge(b"", 0, base_ts=t), 9, INVALID_RECORD, None),
        ("negative-record-length", "plain", forge(record(f(), length=-9), 1, base_ts=t), 9, INVALID_RECORD, None),
        ("six-byte-varint", "plain", forge(b"\xff\xff\xff\xff\xff\x01" + f(), 1, base_ts=t), 9, INVALID_RECORD, None),
        ("varint-past-32-bits", "plain", forge(b"\x80\x80\x80\x80\x10" + f(), 1, base_ts=t), 9, INVALID_RECORD, None),
        ("eleven-byte-varlong", "plain", forge(record(b"\x00" + b"\xff" * 10 + b"\x01"), 1, base_ts=t), 9,
         INVALID_RECORD, None),
        ("key-length-minus-2", "plain", forge(record(f(raw_key_len=varint(-2))), 1, base_ts=t), 9, INVALID_RECORD, None),
        ("absurd-key-length", "plain", forge(record(f(raw_key_len=varint(2**31 - 1))), 1, base_ts=t), 9,
         INVALID_RECORD, None),
        ("absurd-value-length", "plain", forge(record(f()[:-3] + varint(2**30) + b"\x00"), 1, base_ts=t), 9,
         INVALID_RECORD, None),
        ("absurd-header-count", "plain", forge(record(f()[:-1] + varint(2**31 - 1)), 1, base_ts=t), 9,
         INVALID_RECORD, None),
        ("negative-header-key", "plain", forge(record(f()[:-1] + varint(1) + varint(-4) + varint(0)), 1, base_ts=t), 9,
         INVALID_RECORD, None),
        ("fields-end-early", "plain", forge(record(f() + b"\x00"), 1, base_ts=t), 9, INVALID_RECORD, None),
        ("offset-deltas-0-5", "plain", forge(records_of(f(offset=0), f(offset=5)), 2, base_ts=t), 9,
         INVALID_RECORD, None),
        ("base-offset-5", "plain", forge(body, 1, base_offset=5, base_ts=t), 9, INVALID_RECORD, None),
        ("producer-id-without-sequence", "plain", forge(body, 1, producer_id=4, base_ts=t), 9, INVALID_RECORD, None),
        ("control-batch", "plain", forge(body, 1, attributes=0x20, base_ts=t), 9, INVALID_RECORD, None),
        ("magic-0", "plain", legacy(0), 9, INVALID_RECORD, None),
        ("magic-1", "plain", legacy(1), 9, INVALID_RECORD, None),
        ("magic-3", "plain", forge(body, 1, magic=3, base_ts=t), 9, CORRUPT_MESSAGE, None),
        ("unknown-codec-5", "plain", forge(body, 1, attributes=5, raw_body=True, base_ts=t), 9, INVALID_RECORD, None),
        ("zstd-on-produce-v6", "plain", forge(body, 1, Compression.ZSTD, base_ts=t), 6, UNSUPPORTED_COMPRESSION_TYPE, None),
        ("zstd-without-its-checksum", "plain",
         raw_compressed(Compression.ZSTD, zstandard.ZstdCompressor(write_checksum=True).compress(body)[:-4]), 9,
         INVALID_RECORD, None),
        ("gzip-two-members", "plain", raw_compressed(Compression.GZIP, gzip.compress(body[:3]) + gzip.compress(body[3:])),
         9, INVALID_RECORD, None),
        ("lz4-linked-blocks", "plain", raw_compressed(Compression.LZ4, lz4.frame.compress(many, block_linked=True), 100),
         9, INVALID_RECORD, None),
        ("record-too-old", "strict-time",
         forge(records_of(f(offset=0), f(offset=1, ts=-2 * HOUR), f(offset=2)), 3, base_ts=t), 9, INVALID_TIMESTAMP, [1]),
        ("record-too-new", "strict-time",
         forge(records_of(f(offset=0), f(offset=1), f(offset=2, ts=2 * HOUR)), 3, base_ts=t), 9, INVALID_TIMESTAMP, [2]),
        ("null-key-on-compacted", "compacted", forge(records_of(f(offset=0), f(offset=1, key=None)), 2, base_ts=t), 9,
         INVALID_RECORD, [1]),
        ("client-log-append-time", "appendtime", forge(records_of(f(offset=0), f(offset=1)), 2, attributes=0x08, base_ts=t),
         9, INVALID_TIMESTAMP, [0, 1]),
        ("log-append-time-without-time", "plain", forge(body, 1, attributes=0x08, base_ts=t, max_ts=-1), 9,
         INVALID_TIMESTAMP, [0]),
        ("zstd-bomb-past-the-cap", "small", raw_compressed(Compression.ZSTD, zstd_bomb_record(70 << 20)), 9,
         MESSAGE_TOO_LARGE, None),
    ]
    for codec in (Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD):
        name = codec.name.lower()
        cases += [
            (f"{name}-random-bytes", "plain", raw_compressed(codec, garbage), 9, INVALID_RECORD, None),
            (f"{name}-too-few-records", "plain", forge(records_of(f()), 3, codec, base_ts=t), 9, INVALID_RECORD, None),
            (f"{name}-key-length-minus-2", "plain", forge(record(f(raw_key_len=varint(-2))), 1, codec, base_ts=t), 9,
             INVALID_RECORD, None),
            (f"{name}-null-key-on-compacted", "compacted",
             forge(records_of(f(offset=0, key=None), f(offset=1)), 2, codec, base_ts=t), 9, INVALID_RECORD, [0]),
        ]
    return cases


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list[bytes]:
    """Every record of partition 0 through librdkafka; any error fails."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"check-{topic}", "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    if len(values) >= expected:
                        return values
                    continue
                raise AssertionError(f"{topic}: the consumer got {msg.error()}")
            values.append(msg.value())
        raise AssertionError(f"{topic}: {len(values)} of {expected} records read")
    finally:
        consumer.close()


def check_lying_batches(broker, suffix: str) -> None:
    topics = create_topics(broker, suffix)
    stored = {kind: [] for kind in TOPICS}
    wrong = []
    with Client(broker.bootstrap_servers) as client:
        for kind in TOPICS:
            values = [f"{kind}-before-{i}".encode() for i in range(3)]
            assert client.produce(topics[kind], valid(values)).error_code == 0
            stored[kind] += values
        for name, kind, batch, version, code, indexes in lying_batches():
            topic = topics[kind]
            end = client.log_end(topic)
            answer = client.produce(topic, batch, version)
            seen = (answer.error_code, None if indexes is None else [e.batch_index for e in answer.record_errors])
            want = (code, indexes)
            if seen != want or client.log_end(topic) != end or answer.base_offset != -1:
                wrong.append(f"{name}: answered {seen}, want {want}; log end {end} -> {client.log_end(topic)}")
            # the connection goes on: a valid batch right after is taken
            values = [f"{kind}-after-{name}".encode()]
            assert client.produce(topic, valid(values)).error_code == 0, name
            stored[kind] += values
    assert not wrong, "\n".join(wrong)
    for kind, values in stored.items():
        assert consume_all(broker.bootstrap_servers, topics[kind], len(values)) == values


def test_lying_batches_get_kafkas_codes_and_nothing_is_stored(broker, scanner):
    check_lying_batches(broker, scanner)


def test_the_same_answers_when_checked_in_worker_threads(broker, monkeypatch):
    from pybroker.handlers import produce

    monkeypatch.setattr(produce, "INLINE_SECONDS", 0.0)
    check_lying_batches(broker, "threads")


def test_a_held_request_keeps_its_connections_order(broker, monkeypatch):
    """Compressed batches checked in a worker thread, each followed by a
    small one on the same connection, all sent at once: appended, and
    answered, in the order sent."""
    from pybroker.handlers import produce

    monkeypatch.setattr(produce, "INLINE_SECONDS", 0.0)
    topic = "held-order"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    big = valid([bytes(2000)] * 3000, Compression.ZSTD)
    small = valid([b"after"])
    requests = []
    for n, batch in enumerate([big, small, big, small], start=1):
        body = ProduceRequest(
            acks=1, timeout_ms=10_000,
            topic_data=[TopicProduceData(name=topic, partition_data=[PartitionProduceData(index=0, records=batch)])],
        )
        requests.append((body, n))
    with Client(broker.bootstrap_servers) as client:
        client.send_raw(b"".join(encode_request(body, 9, n, "held") for body, n in requests))
        offsets = []
        for _, n in requests:
            header, response = client.receive(0, 9)
            assert header.correlation_id == n
            (partition,) = response.responses[0].partition_responses
            assert partition.error_code == 0
            offsets.append(partition.base_offset)
    assert offsets == [0, 3000, 3001, 6001]


def test_a_held_request_whose_client_goes_away_leaves_the_broker_serving(broker, monkeypatch):
    from pybroker.handlers import produce

    monkeypatch.setattr(produce, "INLINE_SECONDS", 0.0)
    topic = "held-gone"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    big = valid([bytes(2000)] * 3000, Compression.ZSTD)
    with Client(broker.bootstrap_servers) as gone:
        gone.send_raw(encode_request(produce_request(topic, big, acks=1), 9, 1, "gone"))
    # acks=0 gets no answer, so a refused batch closes the connection, held or not
    bad = raw_compressed(Compression.ZSTD, zstandard.ZstdCompressor().compress(records_of(fields()))[:-1])
    with Client(broker.bootstrap_servers) as quiet:
        quiet.send_raw(encode_request(produce_request(topic, bad, acks=0), 9, 1, "quiet"))
        assert quiet.closed_by_peer()
    with Client(broker.bootstrap_servers) as client:
        placed = client.produce(topic, valid([b"still here"]))
        # The departed client's batch is still being checked in its worker
        # thread, or appended already: ours lands before or after it.
        assert placed.error_code == 0 and placed.base_offset in (0, 3000)
        assert client.log_end(topic) in (placed.base_offset + 1, 3001)
