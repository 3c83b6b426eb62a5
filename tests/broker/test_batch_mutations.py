"""A property test of the produce checks: random mutations of valid batches
(bit flips, varint rewrites, truncations, count and length changes, header
fields), each with its CRC recomputed so the record checks are what is
tried, sent to a live broker. Every one must be either refused with a Kafka
error code, the log end unmoved, or stored as sent: the batch fetched back
raw equals the one sent but for what the broker stamps (base offset, leader
epoch, and the max timestamp Kafka recomputes from the records, with the
CRC over it). At the end librdkafka reads the whole partition without an
error, every stored record in order, each batch's max timestamp the largest
of its records'. Never stored-and-unreadable.

Seeded and bounded: MUTATIONS batches or SECONDS, whichever ends first;
the seed is in the failure message.
"""

from __future__ import annotations

import os
import random
import struct
import time

import crc32c
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pybroker.protocol.compression import Compression, compress
from pybroker.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pybroker.protocol.primitives import write_varint, write_varlong
from pybroker.protocol.record_batch import CRC_OFFSET
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.testing import running_broker

from .test_bad_input import Conn, log_end, produce_request

SEED = int(os.environ.get("PYBROKER_MUTATION_SEED", "20261203"))
MUTATIONS = 500
SECONDS = 120
HOUR = 3_600_000
TOPIC = "mutated"
# Kafka's answers to a batch it refuses (and transactions, which pybroker lacks).
REFUSALS = {2, 10, 32, 53, 76, 87}


@pytest.fixture(scope="module")
def broker():
    with running_broker({"num.partitions": "1"}) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap_servers})
        config = {"message.timestamp.before.max.ms": str(HOUR), "message.timestamp.after.max.ms": str(HOUR)}
        admin.create_topics([NewTopic(TOPIC, 1, 1, config=config)])[TOPIC].result(30)
        yield b


def valid_records(rnd: random.Random, now: int) -> list[NewRecord]:
    return [
        NewRecord(
            rnd.choice([None, b"", b"key", bytes(rnd.randrange(256) for _ in range(rnd.randrange(40)))]),
            rnd.choice([None, b"", bytes(rnd.randrange(256) for _ in range(rnd.randrange(300)))]),
            [(f"h{j}", rnd.choice([None, b"", b"value"])) for j in range(rnd.randrange(3))],
            now + rnd.randrange(-60_000, 60_000),
        )
        for _ in range(rnd.randrange(1, 12))
    ]


def random_varint(rnd: random.Random) -> bytes:
    """A varint of some interesting value, or bytes that only look like one."""
    kind = rnd.randrange(5)
    out = bytearray()
    if kind == 0:
        write_varint(out, rnd.choice([-2, -1, 0, 1, 2**31 - 1, -(2**31), rnd.randrange(-300, 300)]))
    elif kind == 1:
        write_varlong(out, rnd.choice([2**63 - 1, -(2**63), rnd.randrange(-10**12, 10**12)]))
    elif kind == 2:
        out += b"\xff" * rnd.randrange(4, 11) + b"\x01"  # overlong
    elif kind == 3:
        out += b"\x80" * rnd.randrange(1, 5) + b"\x00"  # padded, still the same number
    else:
        out += b"\x80\x80\x80\x80\x1f"  # past 32 bits
    return bytes(out)


def mutate_records(body: bytearray, rnd: random.Random) -> str:
    if not body:
        return "empty"
    at = rnd.randrange(len(body))
    kind = rnd.randrange(4)
    if kind == 0:
        body[at] ^= 1 << rnd.randrange(8)
        return f"flip@{at}"
    if kind == 1:
        width = rnd.randrange(0, 4)
        body[at : at + width] = random_varint(rnd)
        return f"varint@{at}"
    if kind == 2:
        del body[at:]
        return f"truncate@{at}"
    body[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 4)))
    return f"insert@{at}"


def mutate_header(raw: bytearray, rnd: random.Random) -> str:
    """Header fields; the batch length is rewritten after, unless that is the mutation."""
    field = rnd.randrange(8)
    if field == 0:
        struct.pack_into(">i", raw, 57, struct.unpack_from(">i", raw, 57)[0] + rnd.choice([-2, -1, 1, 2, 2**30]))
        return "record count"
    if field == 1:
        struct.pack_into(">i", raw, 23, rnd.choice([-1, 0, 2**31 - 1, struct.unpack_from(">i", raw, 23)[0] + 1]))
        return "last offset delta"
    if field == 2:
        struct.pack_into(">h", raw, 21, struct.unpack_from(">h", raw, 21)[0] ^ (1 << rnd.randrange(7)))
        return "attributes"
    if field == 3:
        struct.pack_into(">q", raw, 35, rnd.choice([-1, 0, struct.unpack_from(">q", raw, 35)[0] + 10**7]))
        return "max timestamp"
    if field == 4:
        struct.pack_into(">q", raw, 27, struct.unpack_from(">q", raw, 27)[0] + rnd.choice([-2 * HOUR, 2 * HOUR, 10**6]))
        return "base timestamp"
    if field == 5:
        struct.pack_into(">q", raw, 0, rnd.choice([1, 5, -1]))
        return "base offset"
    if field == 6:
        struct.pack_into(">qhi", raw, 43, rnd.randrange(0, 10**6), 0, -1)  # a producer id without a sequence
        return "producer id"
    raw[16] = rnd.choice([0, 1, 3])
    return "magic"


def mutant(rnd: random.Random, now: int) -> tuple[bytes, str]:
    codec = rnd.choice(list(Compression))
    batch = bytearray(build_batch(valid_records(rnd, now)))
    header, body = batch[:61], bytearray(batch[61:])
    what = []
    choice = rnd.randrange(10)
    if choice < 6:
        what.append(mutate_records(body, rnd))
    if codec:
        body = bytearray(compress(codec, bytes(body)))
        header[22] |= codec
        if choice == 6:
            what.append("compressed " + mutate_records(body, rnd))
    if choice >= 7:
        what.append(mutate_header(header, rnd))
    raw = header + body
    struct.pack_into(">i", raw, 8, len(raw) - 12)
    if rnd.random() < 0.1:
        struct.pack_into(">i", raw, 8, len(raw) - 12 + rnd.choice([-3, -1, 1, 7]))
        what.append("batch length")
    struct.pack_into(">I", raw, CRC_OFFSET, crc32c.crc32c(bytes(raw[21:])))
    return bytes(raw), f"{codec.name.lower()}: {', '.join(what) or 'none'}"


def fetch_batch(conn: Conn, offset: int) -> bytes:
    request = FetchRequest(
        max_wait_ms=0,
        topics=[FetchTopic(topic=TOPIC, partitions=[FetchPartition(partition=0, fetch_offset=offset, partition_max_bytes=4 << 20)])],
    )
    (partition,) = conn.request(request, 12).responses[0].partitions
    assert partition.error_code == 0
    records = bytes(partition.records)
    (length,) = struct.unpack_from(">i", records, 8)
    return records[: 12 + length]


def stamped_the_same(sent: bytes, stored: bytes, base: int) -> str | None:
    """What differs beyond what the broker may stamp, or None."""
    if len(sent) != len(stored):
        return f"stored {len(stored)} bytes for {len(sent)} sent"
    if struct.unpack_from(">q", stored, 0)[0] != base:
        return "base offset"
    if crc32c.crc32c(stored[21:]) != struct.unpack_from(">I", stored, CRC_OFFSET)[0]:
        return "stored CRC"
    # leader epoch 12-16, CRC 17-21, timestamp-type bit of the attributes, max timestamp 35-43
    if stored[8:12] != sent[8:12] or stored[16] != sent[16] or stored[23:35] != sent[23:35] or stored[43:] != sent[43:]:
        return "bytes the broker must not change"
    if stored[21] != sent[21] or stored[22] & ~0x08 != sent[22] & ~0x08:
        return "attributes"
    return None


def read_everything(bootstrap: str, expected: int) -> list:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "mutations", "enable.auto.commit": False,
        "enable.partition.eof": True, "fetch.max.bytes": 64 << 20,
    })
    try:
        consumer.assign([TopicPartition(TOPIC, 0, 0)])
        messages = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF and len(messages) >= expected:
                    return messages
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"librdkafka: {msg.error()} after {len(messages)} records")
                continue
            messages.append((msg.offset(), msg.timestamp()[1]))
        raise AssertionError(f"librdkafka read {len(messages)} of {expected} records")
    finally:
        consumer.close()


def test_mutated_batches_are_stored_as_sent_or_refused(broker):
    rnd = random.Random(SEED)
    stored = []  # (base offset, record count, max timestamp as stored, sent with LogAppendTime bit)
    wrong = []
    outcomes = {}
    started = time.monotonic()
    with Conn(broker.bootstrap_servers, timeout=30) as conn:
        end = log_end(conn, TOPIC)
        for n in range(MUTATIONS):
            if time.monotonic() - started > SECONDS:
                break
            raw, what = mutant(rnd, int(time.time() * 1000))
            (answer,) = conn.request(produce_request(TOPIC, raw, acks=1), 9).responses[0].partition_responses
            outcomes[answer.error_code] = outcomes.get(answer.error_code, 0) + 1
            now_end = log_end(conn, TOPIC)
            if answer.error_code:
                if answer.error_code not in REFUSALS or now_end != end:
                    wrong.append(f"#{n} {what}: code {answer.error_code}, log end {end} -> {now_end}")
                continue
            batch = fetch_batch(conn, answer.base_offset)
            count = struct.unpack_from(">i", raw, 57)[0]
            problem = stamped_the_same(raw, batch, answer.base_offset)
            if problem or now_end != end + count or answer.base_offset != end:
                wrong.append(f"#{n} {what}: stored, but {problem or 'offsets'} ({end} + {count} -> {now_end})")
            stored.append((answer.base_offset, count, struct.unpack_from(">q", batch, 35)[0], bool(raw[22] & 0x08)))
            end = now_end
    assert not wrong, f"seed {SEED}:\n" + "\n".join(wrong)
    assert outcomes.get(0, 0) >= 20 and sum(v for k, v in outcomes.items() if k) >= 100, outcomes
    messages = read_everything(broker.bootstrap_servers, end)
    assert [offset for offset, _ in messages] == list(range(end))
    for base, count, max_ts, lat in stored:
        timestamps = [ts for offset, ts in messages[base : base + count]]
        if not lat:
            assert max_ts == max([-1, *timestamps]), (base, max_ts, timestamps)
