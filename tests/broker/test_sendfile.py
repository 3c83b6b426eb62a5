"""Fetch responses sent from the segment files (sendfile), over real sockets.

On plain TCP a Fetch response carries its record data as file regions and
the connection sends them with os.sendfile; otherwise (or once sendfile is
refused) as bytes read with pread. Both must answer exactly alike, within
Kafka's limits (the first batch whole, KIP-74; per-partition and response
max bytes), and real consumers must read through both. A segment deleted
while a response still waits to be sent leaves the response intact; a
segment cut under it closes the connection, since the frame's length was
promised already.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import socket
import time

import pytest
import trio

import pybroker.server
from pybroker.protocol.framing import FrameDecoder
from pybroker.protocol.record_batch import split_batches
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.testing import running_broker

from .clients import CLIENTS, Confluent
from .raw_requests import create, fetch_request, produce, slow_reader
from .wire import Wire
from .workload import unique_topic, wait_for

SEGMENT = 1_600_000  # three 500 KB batches, then a new segment
PARTS = 8


@pytest.fixture(scope="module")
def broker():
    with running_broker({"num.partitions": str(PARTS), "log.segment.bytes": str(SEGMENT)}) as b:
        yield b


@pytest.fixture
def sendfile_calls(monkeypatch):
    calls = []
    real = os.sendfile

    def counting(*args):
        calls.append(args[3])
        return real(*args)

    monkeypatch.setattr(os, "sendfile", counting)
    return calls


def fetch(w: Wire, topic: str, wants: list[tuple[int, int, int]], max_bytes: int, version: int = 12):
    """[(partition, offset, partition max bytes)] -> {partition: records bytes}"""
    w.send(fetch_request(topic, wants, max_bytes), version, 2)
    _, resp = w.receive(1, version)
    return {p.partition_index: bytes(p.records) for t in resp.responses for p in t.partitions}


def offsets_of(records: bytes) -> list[tuple[int, int]]:
    batches, rest = split_batches(records)
    assert rest == 0, "only whole batches"
    for b in batches:
        b.validate()
    return [(b.base_offset, b.size_in_bytes) for b in batches]


def test_fetch_limits_alike_with_and_without_sendfile(broker, monkeypatch, sendfile_calls):
    topic = unique_topic("limits")
    w = Wire(broker.bootstrap_servers)
    create(w, topic)
    rng = random.Random(4)
    for p in range(3):
        for n in (3000, 500, 500, 4000, 200, 200):
            produce(w, topic, p, [rng.randbytes(n)])
    sizes = [s for _, s in offsets_of(fetch(w, topic, [(0, 0, 1 << 20)], 1 << 20)[0])]
    w.close()
    everything = sum(sizes)
    cases = [
        # (partitions wanted, response max bytes) -> batches per partition
        (([(0, 0, 100)], 1 << 20), {0: [0]}),  # KIP-74: the first batch whole, above the limit
        (([(0, 0, sum(sizes[:3]) - 1)], 1 << 20), {0: [0, 1]}),  # whole batches only
        (([(0, 2, 1 << 20)], 1 << 20), {0: [2, 3, 4, 5]}),  # from a batch in the middle
        (
            ([(0, 0, 1 << 20), (1, 0, 1 << 20), (2, 0, 1 << 20)], everything + sizes[0] + 5),
            {0: [0, 1, 2, 3, 4, 5], 1: [0], 2: []},
        ),
        (([(0, 0, 1 << 20), (1, 0, 1 << 20)], 100), {0: [0], 1: []}),  # the response limit spares the first batch only
        (([(0, 6, 1 << 20), (1, 5, 1 << 20)], 1 << 20), {0: [], 1: [5]}),  # at and near the log end
    ]
    answers = {}
    for zero_copy in (True, False):
        monkeypatch.setattr(pybroker.server, "SENDFILE", zero_copy)
        before = len(sendfile_calls)
        w = Wire(broker.bootstrap_servers)
        answers[zero_copy] = [fetch(w, topic, wants, max_bytes) for (wants, max_bytes), _ in cases]
        w.close()
        assert (len(sendfile_calls) > before) == zero_copy
    assert answers[True] == answers[False]
    for answer, (_, want) in zip(answers[True], cases):
        assert {p: [o for o, _ in offsets_of(r)] for p, r in answer.items()} == want


@pytest.mark.parametrize("reader", list(CLIENTS))
def test_real_consumers_read_through_sendfile(broker, reader, sendfile_calls):
    topic = unique_topic("sendfile")
    rng = random.Random(8)
    values = {p: [rng.randbytes(rng.choice([10, 1000, 70_000])) for _ in range(60)] for p in range(3)}
    w = Wire(broker.bootstrap_servers)
    create(w, topic)
    for p, vs in values.items():
        for i in range(0, len(vs), 7):
            produce(w, topic, p, vs[i : i + 7])
    w.close()
    got = CLIENTS[reader](broker.bootstrap_servers).consume(topic, 3, 180)
    assert {p: [m.value for m in got if m.partition == p] for p in range(3)} == values
    assert sendfile_calls


def test_a_refused_sendfile_falls_back_to_bytes(broker, monkeypatch, caplog):
    def refuse(*args):
        raise OSError(errno.EINVAL, "Invalid argument")

    caplog.set_level(logging.INFO, logger="pybroker.server")
    monkeypatch.setattr(os, "sendfile", refuse)
    topic = unique_topic("refused")
    w = Wire(broker.bootstrap_servers)
    create(w, topic)
    values = [bytes([i]) * 5000 for i in range(30)]
    for i in range(0, 30, 5):
        produce(w, topic, 0, values[i : i + 5])
    w.close()
    got = Confluent(broker.bootstrap_servers).consume(topic, 1, 30)
    assert [m.value for m in got] == values
    assert "sendfile refused" in caplog.text


def _stuck_fetch(broker, topic: str) -> tuple[Wire, int]:
    """A connection whose Fetch response (about 12 MB, one first segment
    per partition) is being sent and cannot finish: the client does not
    read, and its receive buffer and the broker's send buffer together
    hold far less. Returns the connection and the response's size."""
    w = Wire(broker.bootstrap_servers)
    create(w, topic)
    for p in range(PARTS):
        for i in range(4):
            produce(w, topic, p, [bytes([p * 4 + i]) * 500_000])
    w.close()
    sock = slow_reader(broker.bootstrap_servers)
    w = Wire.__new__(Wire)
    w.sock, w.frames, w.timeout = sock, FrameDecoder(), 30
    w.send(fetch_request(topic, [(p, 0, 50 << 20) for p in range(PARTS)], 50 << 20), 12, 9)

    def started():
        try:
            return len(sock.recv(4, socket.MSG_PEEK | socket.MSG_DONTWAIT)) == 4
        except BlockingIOError:
            return False

    wait_for(started, 30, "the response to start")
    size = int.from_bytes(sock.recv(4, socket.MSG_PEEK), "big")
    assert size > 10_000_000
    return w, size


def test_segments_deleted_while_a_response_waits(broker, sendfile_calls):
    topic = unique_topic("deleted")
    w, _ = _stuck_fetch(broker, topic)
    parts = [broker.broker.replicas.partition(topic, p) for p in range(PARTS)]
    assert all(len(part.log.segments) == 2 for part in parts)
    second = {p: part.log.segments[1].base_offset for p, part in enumerate(parts)}
    assert Confluent(broker.bootstrap_servers).delete_records(topic, second) == second
    assert all(len(part.log.segments) == 1 for part in parts)
    _, resp = w.receive(1, 12)
    for t in resp.responses:
        for p in t.partitions:
            batches, rest = split_batches(bytes(p.records))
            assert rest == 0 and [b.base_offset for b in batches] == [0, 1, 2]
            for i, b in enumerate(batches):
                b.validate()
                assert next(iter(b.records())).value == bytes([p.partition_index * 4 + i]) * 500_000
    w.close()


def test_a_segment_cut_while_a_response_waits_closes_the_connection(broker, caplog):
    caplog.set_level(logging.INFO, logger="pybroker.server")
    topic = unique_topic("cut")
    w, size = _stuck_fetch(broker, topic)
    last = broker.broker.replicas.partition(topic, PARTS - 1)

    def cut():
        last.log.truncate_to(1)
        last.log.append(build_batch([NewRecord(b"k", b"new" * 300_000, (), int(time.time() * 1000))]))

    trio.from_thread.run_sync(cut, trio_token=broker.token)
    received = 0
    while True:
        data = w.sock.recv(1 << 20)
        if not data:
            break
        received += len(data)
    assert received < 4 + size  # the frame was cut short: nothing of the new batch reached the client
    assert "segment file cut" in caplog.text
    w.close()
    other = Wire(broker.bootstrap_servers)
    assert fetch(other, topic, [(0, 0, 100)], 100)[0]  # the broker serves on
    other.close()
