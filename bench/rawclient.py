"""A small blocking Kafka client on pybroker's own codec, for what the
benchmark must see byte for byte: the size of a Fetch response against the
limits it asked for, the high watermarks a broker reports, and the error
code one Produce gets (whether acks=all is refused before a measurement).
The load itself comes from real clients (bench.loadgen).

A cluster serves each partition from its leader: ``leaders`` (one Metadata
request) says which broker that is, ``by_leader`` groups partitions by it.
"""

from __future__ import annotations

import socket
import ssl
import struct
from typing import Self

from pybroker.protocol.framing import decode_response, encode_request
from pybroker.protocol.messages.api_versions_request import ApiVersionsRequest
from pybroker.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pybroker.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from pybroker.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
from pybroker.protocol.registry import ApiKey

_SIZE = struct.Struct(">i")
LATEST = -1


class RawClient:
    def __init__(self, bootstrap: str, timeout: float = 30, ca: str | None = None):
        """``bootstrap``: host:port, or a comma-separated list whose first
        one is used; ``ca``: an SSL listener, whose certificate this CA signed."""
        host, port = bootstrap.split(",", 1)[0].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ca:
            self.sock = ssl.create_default_context(cafile=ca).wrap_socket(self.sock, server_hostname=host)
        self._correlation = 0
        self.versions: dict[int, tuple[int, int]] = {}
        self._buffer = bytearray()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, body, version: int, reuse: bool = False):
        """Send one request and return (response, frame size in bytes).
        ``reuse``: receive into the client's one buffer, as a consumer's
        fetcher does; the response's byte fields are views into it, good
        until the next call."""
        self.send(body, version)
        return self.receive(body.API_KEY, version, reuse)

    def send(self, body, version: int) -> None:
        """The first half of call(): with several clients, send on each,
        then receive on each, and the brokers work at once."""
        self._correlation += 1
        self.sock.sendall(encode_request(body, version, self._correlation, "pybroker-bench"))

    def receive(self, api_key: int, version: int, reuse: bool = False):
        """The second half of call(): (response, frame size)."""
        (size,) = _SIZE.unpack(self._exactly(4, False))
        frame = self._exactly(size, reuse)
        _, response = decode_response(api_key, version, frame)
        return response, size

    def _exactly(self, n: int, reuse: bool):
        if not reuse:
            buf = bytearray(n)
        else:
            if len(self._buffer) < n:
                self._buffer = bytearray(n)
            buf = self._buffer
        view = memoryview(buf)[:n]
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if not k:
                raise ConnectionError("broker closed the connection")
            got += k
        return view if reuse else buf

    def negotiate(self) -> None:
        response, _ = self.call(ApiVersionsRequest(), 0)
        self.versions = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}

    def version(self, api_key: int, lo: int, hi: int) -> int:
        """The highest version both sides speak in [lo, hi]."""
        if not self.versions:
            self.negotiate()
        theirs = self.versions.get(api_key)
        if theirs is None or theirs[1] < lo or theirs[0] > hi:
            raise RuntimeError(f"no common version of {ApiKey(api_key).name} in {lo}..{hi}: broker has {theirs}")
        return min(hi, theirs[1])

    def _metadata(self, topic: str):
        v = self.version(ApiKey.METADATA, 1, 12)
        response, _ = self.call(
            MetadataRequest(topics=[MetadataRequestTopic(name=topic)], allow_auto_topic_creation=False), v
        )
        return response

    def partitions(self, topic: str) -> list[int]:
        for t in self._metadata(topic).topics:
            if t.name == topic:
                return sorted(p.partition_index for p in t.partitions)
        return []

    def leaders(self, topic: str) -> dict[int, str]:
        """host:port of each partition's leader, for the partitions that have one."""
        response = self._metadata(topic)
        brokers = {b.node_id: f"{b.host}:{b.port}" for b in response.brokers}
        return {
            p.partition_index: brokers[p.leader_id]
            for t in response.topics
            if t.name == topic
            for p in t.partitions
            if p.leader_id in brokers
        }

    def latest_offsets(self, topic: str, partitions: list[int]) -> dict[int, int]:
        v = self.version(ApiKey.LIST_OFFSETS, 1, 7)
        req = ListOffsetsRequest(
            replica_id=-1,
            topics=[
                ListOffsetsTopic(
                    name=topic,
                    partitions=[ListOffsetsPartition(partition_index=p, timestamp=LATEST) for p in partitions],
                )
            ],
        )
        response, _ = self.call(req, v)
        return {p.partition_index: p.offset for t in response.topics for p in t.partitions}

    def produce_once(self, topic: str, partition: int, batch: bytes, acks: int, timeout_ms: int = 10000):
        """One Produce of one batch to one partition: (error code, error message)."""
        v = self.version(ApiKey.PRODUCE, 3, 9)
        req = ProduceRequest(
            acks=acks,
            timeout_ms=timeout_ms,
            topic_data=[
                TopicProduceData(name=topic, partition_data=[PartitionProduceData(index=partition, records=batch)])
            ],
        )
        response, _ = self.call(req, v)
        answer = response.responses[0].partition_responses[0]
        return answer.error_code, getattr(answer, "error_message", None)

    def fetch_once(self, topic: str, partition: int, offset: int, max_bytes: int, partition_max_bytes: int):
        """One Fetch by topic name (v4-12); returns (partition data, frame size)."""
        parts, size = self.fetch(topic, {partition: offset}, max_bytes, partition_max_bytes)
        if partition not in parts:
            raise RuntimeError(f"Fetch answered without partition {topic}-{partition}")
        return parts[partition], size

    def fetch(self, topic: str, offsets: dict[int, int], max_bytes: int, partition_max_bytes: int, reuse: bool = False):
        """One Fetch by topic name (v4-12) for every partition in
        ``offsets``; returns ({partition: partition data}, frame size).
        ``reuse``: see call()."""
        self.send_fetch(topic, offsets, max_bytes, partition_max_bytes)
        return self.receive_fetch(reuse)

    def send_fetch(self, topic: str, offsets: dict[int, int], max_bytes: int, partition_max_bytes: int) -> None:
        """fetch(), sent; receive_fetch() reads its answer."""
        v = self.version(ApiKey.FETCH, 4, 12)
        req = FetchRequest(
            replica_id=-1,
            max_wait_ms=500,
            min_bytes=1,
            max_bytes=max_bytes,
            isolation_level=0,
            topics=[
                FetchTopic(
                    topic=topic,
                    partitions=[
                        FetchPartition(partition=p, fetch_offset=o, partition_max_bytes=partition_max_bytes)
                        for p, o in offsets.items()
                    ],
                )
            ],
        )
        self.send(req, v)

    def receive_fetch(self, reuse: bool = False):
        v = self.version(ApiKey.FETCH, 4, 12)
        response, size = self.receive(ApiKey.FETCH, v, reuse)
        if response.error_code:
            raise RuntimeError(f"Fetch v{v} failed with error {response.error_code}")
        return {p.partition_index: p for t in response.responses for p in t.partitions}, size


def by_leader(bootstrap: str, topic: str) -> dict[str, list[int]]:
    """The topic's partitions grouped by their leader's host:port (asked of
    the first bootstrap broker); partitions without a leader are left out."""
    with RawClient(bootstrap) as c:
        leaders = c.leaders(topic)
    grouped: dict[str, list[int]] = {}
    for partition, address in sorted(leaders.items()):
        grouped.setdefault(address, []).append(partition)
    return grouped
