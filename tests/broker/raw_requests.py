"""Requests the raw-socket tests of the hot paths send again and again:
one-batch produces, multi-partition fetches, a client that reads slowly."""

from __future__ import annotations

import socket
import time

from protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
from protocol.records import NewRecord, build_batch

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


def slow_reader(bootstrap: str) -> socket.socket:
    """A connection with a 64 KiB receive buffer, set before connecting so
    the window never scales up: the broker's responses back up quickly."""
    host, port = bootstrap.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.settimeout(60)
    sock.connect((host, int(port)))
    return sock
