"""Requests the raw-socket tests of the hot paths send again and again:
one-batch produces, multi-partition fetches, a client that reads slowly,
and a producer that times every request while other work goes on."""

from __future__ import annotations

import socket
import statistics
import threading
import time

from pybroker.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from pybroker.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
from pybroker.protocol.records import NewRecord, build_batch

from .wire import Wire


def create(w: Wire, *topics: str) -> None:
    """Auto-create topics through Metadata."""
    w.send(MetadataRequest(topics=[MetadataRequestTopic(name=t) for t in topics]), 9, 0)
    w.receive(3, 9)


def produce_request(topic: str, partition: int, values: list[bytes], acks: int = 1) -> ProduceRequest:
    """One batch of ``values`` (key b"k", the current time) for one partition."""
    batch = build_batch([NewRecord(b"k", v, (), int(time.time() * 1000)) for v in values])
    return ProduceRequest(
        acks=acks,
        timeout_ms=5000,
        topic_data=[
            TopicProduceData(name=topic, partition_data=[PartitionProduceData(index=partition, records=batch)])
        ],
    )


def produce(w: Wire, topic: str, partition: int, values: list[bytes]) -> None:
    w.send(produce_request(topic, partition, values), 9, 1)
    assert w.receive(0, 9)[1].responses[0].partition_responses[0].error_code == 0


def fetch_request(topic: str, wants: list[tuple[int, int, int]], max_bytes: int) -> FetchRequest:
    """[(partition, offset, partition max bytes)], answered at once."""
    return FetchRequest(
        max_wait_ms=0,
        min_bytes=0,
        max_bytes=max_bytes,
        topics=[
            FetchTopic(
                topic=topic,
                partitions=[FetchPartition(partition=p, fetch_offset=o, partition_max_bytes=m) for p, o, m in wants],
            )
        ],
    )


def long_poll(topic: str, wait_ms: int, offset: int = 0) -> FetchRequest:
    """A Fetch of partition 0 from ``offset`` that waits up to ``wait_ms`` for one byte."""
    request = fetch_request(topic, [(0, offset, 1 << 20)], 1 << 20)
    request.max_wait_ms = wait_ms
    request.min_bytes = 1
    return request


def slow_reader(bootstrap: str) -> socket.socket:
    """A connection with a 64 KiB receive buffer, set before connecting so
    the window never scales up: the broker's responses back up quickly."""
    host, port = bootstrap.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(60)
    sock.connect((host, int(port)))
    return sock


class TimedProducer:
    """Small acks=1 produces back to back on a connection of its own, in a
    thread, each one's wait kept with the time it was sent: how long other
    work (a bomb, thousands of new partitions) made an ordinary client wait.
    Errors are kept for the test to assert on, not swallowed."""

    def __init__(self, bootstrap: str, topic: str):
        self.wire = Wire(bootstrap, timeout=60)
        self.topic = topic
        self.samples: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        request = produce_request(self.topic, 0, [b"steady"])
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                self.wire.send(request, 9, 1)
                (answer,) = self.wire.receive(0, 9)[1].responses[0].partition_responses
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(exc))
                return
            self.samples.append((sent, time.monotonic() - sent))
            if answer.error_code:
                self.errors.append(f"produce answered {answer.error_code}")

    def __enter__(self):
        self._thread.start()
        deadline = time.monotonic() + 30
        while len(self.samples) < 10 and not self.errors:
            assert time.monotonic() < deadline, "the timed producer did not get going"
            time.sleep(0.01)  # polling, bounded by the deadline
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)
        self.wire.close()

    def waits_between(self, start: float, end: float) -> list[float]:
        """How long each produce sent in [start, end] waited, and how long
        the one in flight at ``end`` has waited so far."""
        waits = [w for sent, w in self.samples if start <= sent <= end]
        if self.samples:
            last_sent, last_wait = self.samples[-1]
            pending_since = last_sent + last_wait  # the next one left about then
            if pending_since <= end:
                waits.append(time.monotonic() - pending_since)
        return waits

    def p99_between(self, start: float, end: float) -> tuple[float, int]:
        waits = [w for sent, w in self.samples if start <= sent <= end]
        assert len(waits) >= 50, f"only {len(waits)} produces answered meanwhile"
        return statistics.quantiles(waits, n=100)[98], len(waits)
