"""Responses leave in request order, and those already answered leave
together: the writer gathers every ready response queued behind the one it
waited for into one vectored send, over real sockets."""

from __future__ import annotations

import pytest

import pybroker.server
from pybroker.protocol.framing import encode_request
from pybroker.protocol.messages.api_versions_request import ApiVersionsRequest
from pybroker.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from pybroker.testing import running_broker

from .clients import Confluent
from .raw_requests import create, produce_request
from .wire import Wire
from .workload import unique_topic


@pytest.fixture(scope="module")
def broker():
    with running_broker({"num.partitions": "1"}) as b:
        yield b


@pytest.fixture
def sends(monkeypatch):
    """How many times connections sent (one send may carry many responses)."""
    calls = []
    real = pybroker.server.Connection._send

    async def counting(self, chunks):
        calls.append(len(chunks))
        await real(self, chunks)

    monkeypatch.setattr(pybroker.server.Connection, "_send", counting)
    return calls


def test_a_pipeline_with_waiting_answers_keeps_its_order(broker, sends):
    topic = unique_topic("order")
    w = Wire(broker.bootstrap_servers)
    create(w, topic)
    long_poll = FetchRequest(
        max_wait_ms=100,
        min_bytes=1 << 30,  # never satisfied: waits out max_wait_ms
        max_bytes=1 << 20,
        topics=[
            FetchTopic(
                topic=topic, partitions=[FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)]
            )
        ],
    )
    frames, expect = [], []
    for i in range(300):
        kind = i % 10
        if kind == 3:
            frames.append(encode_request(produce_request(topic, 0, [b"all %d" % i], acks=-1), 9, i, "order"))
        elif kind == 7 and i < 100:
            frames.append(encode_request(long_poll, 12, i, "order"))
        elif kind in (1, 5):
            frames.append(encode_request(produce_request(topic, 0, [b"one %d" % i], acks=1), 9, i, "order"))
        elif kind == 9:
            frames.append(encode_request(produce_request(topic, 0, [b"none %d" % i], acks=0), 9, i, "order"))
            continue  # acks=0: no answer
        elif kind % 2:
            frames.append(encode_request(ApiVersionsRequest(), 2, i, "order"))
        else:
            frames.append(encode_request(MetadataRequest(topics=[MetadataRequestTopic(name=topic)]), 9, i, "order"))
        expect.append(i)
    before = len(sends)
    w.send_raw(b"".join(frames))
    assert [w.correlation_of_next() for _ in expect] == expect
    w.close()
    assert len(sends) - before < len(expect) // 2, "ready answers should leave together"
    got = Confluent(broker.bootstrap_servers).consume(topic, 1, 120)
    assert [int(m.value.split()[1]) for m in got] == [i for i in range(300) if i % 10 in (1, 3, 5, 9)]
    assert [m.offset for m in got] == list(range(120))


def test_a_pipelining_producer_gets_every_offset_in_order(broker):
    topic = unique_topic("pipelined")
    client = Confluent(broker.bootstrap_servers)
    producer = client.producer(**{"linger.ms": 0, "acks": 1, "max.in.flight.requests.per.connection": 50})
    offsets = []

    def report(err, msg):
        assert err is None, err
        offsets.append(msg.offset())

    for i in range(20_000):
        while True:
            try:
                producer.produce(topic, b"%d" % i, partition=0, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)  # the local queue is full: serve delivery reports
        producer.poll(0)
    assert producer.flush(60) == 0
    assert sorted(offsets) == list(range(20_000))
    got = client.consume(topic, 1, 20_000)
    assert [int(m.value) for m in got] == list(range(20_000))
