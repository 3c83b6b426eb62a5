"""Request frames of every size, however TCP cuts them, over real sockets.

A connection receives each frame's body straight into a buffer of its own
(pooled up to 1 MiB, grown as the bytes arrive beyond that). A pipeline of
small and large Produce frames sent in odd pieces must come out byte for
byte, answered in order; real clients writing large batches must read back
what they wrote.
"""

from __future__ import annotations

import random
import socket

import pytest

from pybroker.protocol.framing import encode_request
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from pybroker.testing import running_broker

from .clients import Confluent, KafkaPython
from .raw_requests import produce_request
from .wire import Wire
from .workload import unique_topic

BIG = 4 << 20


@pytest.fixture(scope="module")
def broker():
    with running_broker({"message.max.bytes": str(BIG), "num.partitions": "1"}) as b:
        yield b


def produce_frame(topic: str, value: bytes, correlation_id: int) -> bytes:
    return encode_request(produce_request(topic, 0, [value]), 9, correlation_id, "frames")


@pytest.mark.parametrize("seed", [1, 2])
def test_small_and_large_frames_in_odd_pieces(broker, seed):
    rng = random.Random(seed)
    topic = unique_topic("frames")
    w = Wire(broker.bootstrap_servers)
    w.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    w.send(MetadataRequest(topics=[MetadataRequestTopic(name=topic)]), 9, 100)
    w.receive(3, 9)
    # Sizes around the edges: tiny, below and above the pooled minimum,
    # just under and over the 1 MiB reserve, and well past it.
    sizes = [10, 20_000, 40_000, 700_000, (1 << 20) - 200, (1 << 20) + 5000, 3_000_000, 100]
    rng.shuffle(sizes)
    values = [rng.randbytes(n) for n in sizes]
    stream = b"".join(produce_frame(topic, v, i) for i, v in enumerate(values))
    pos = 0
    while pos < len(stream):
        n = rng.choice([1, 3, 5, 1000, 4096, 65536, 300_000, 2_000_000])
        w.send_raw(stream[pos : pos + n])
        pos += n
    for i in range(len(values)):
        header, resp = w.receive(0, 9)
        assert header.correlation_id == i
        part = resp.responses[0].partition_responses[0]
        assert (part.error_code, part.base_offset) == (0, i)
    w.close()
    got = KafkaPython(broker.bootstrap_servers).consume(topic, 1, len(values))
    assert [m.value for m in got] == values


def test_held_frames_survive_later_frames_on_the_same_connection(broker):
    """acks=all answers wait for an fsync while the connection reads on;
    the frames behind them reuse pooled buffers, never a held one."""
    topic = unique_topic("held")
    w = Wire(broker.bootstrap_servers)
    w.send(MetadataRequest(topics=[MetadataRequestTopic(name=topic)]), 9, 100)
    w.receive(3, 9)
    rng = random.Random(5)
    values = [rng.randbytes(rng.choice([50_000, 200_000, 600_000])) for _ in range(40)]
    frames = []
    for i, v in enumerate(values):
        frame = bytearray(produce_frame(topic, v, i))
        if i % 3 == 0:
            # acks=-1 at a fixed place in the ProduceRequest v9 header:
            # after the 4-byte size, the request header and the null
            # transactional id (compact: one 0 byte).
            pos = frame.index(b"frames") + len(b"frames") + 1 + 1
            assert frame[pos : pos + 2] == b"\x00\x01"
            frame[pos : pos + 2] = b"\xff\xff"
        frames.append(bytes(frame))
    w.send_raw(b"".join(frames))
    for i in range(len(values)):
        header, resp = w.receive(0, 9)
        assert header.correlation_id == i
        assert resp.responses[0].partition_responses[0].base_offset == i
    w.close()
    got = Confluent(broker.bootstrap_servers).consume(topic, 1, len(values))
    assert [m.value for m in got] == values


@pytest.mark.parametrize("writer,reader", [(Confluent, KafkaPython), (KafkaPython, Confluent)])
def test_real_clients_with_large_batches(broker, writer, reader):
    topic = unique_topic("large-batches")
    rng = random.Random(11)
    values = [rng.randbytes(rng.choice([1000, 30_000, 90_000])) for _ in range(300)]
    client = writer(broker.bootstrap_servers)
    if writer is Confluent:
        producer = client.producer(**{"linger.ms": 50, "batch.size": 1_000_000, "message.max.bytes": BIG, "acks": 1})
        for v in values:
            producer.produce(topic, v, partition=0)
            producer.poll(0)
        assert producer.flush(60) == 0
    else:
        producer = client.producer(
            linger_ms=50, batch_size=1_000_000, max_request_size=BIG, acks=1, enable_idempotence=False
        )
        for v in values:
            producer.send(topic, v, partition=0)
        producer.flush(60)
        producer.close(10)
    got = reader(broker.bootstrap_servers).consume(topic, 1, len(values))
    assert [m.value for m in got] == values
