"""A small blocking Kafka client on pybroker's own codec, for what the
benchmark must see byte for byte: the size of a Fetch response against the
limits it asked for, and the high watermarks a broker reports.
The load itself comes from real clients (bench.loadgen).
"""

from __future__ import annotations

import socket
import struct
from typing import Self

from pybroker.protocol.framing import decode_response, encode_request
from pybroker.protocol.messages.api_versions_request import ApiVersionsRequest
from pybroker.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pybroker.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from pybroker.protocol.registry import ApiKey

_SIZE = struct.Struct(">i")
LATEST = -1


class RawClient:
    def __init__(self, bootstrap: str, timeout: float = 30):
        """``bootstrap``: host:port, or a comma-separated list whose first one is used."""
        host, port = bootstrap.split(",", 1)[0].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
        self._correlation += 1
        self.sock.sendall(encode_request(body, version, self._correlation, "pybroker-bench"))
        (size,) = _SIZE.unpack(self._exactly(4, False))
        frame = self._exactly(size, reuse)
        _, response = decode_response(body.API_KEY, version, frame)
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

    def partitions(self, topic: str) -> list[int]:
        v = self.version(ApiKey.METADATA, 1, 12)
        response, _ = self.call(
            MetadataRequest(topics=[MetadataRequestTopic(name=topic)], allow_auto_topic_creation=False), v
        )
        for t in response.topics:
            if t.name == topic:
                return sorted(p.partition_index for p in t.partitions)
        return []

    def leaders(self, topic: str) -> dict[int, str]:
        """host:port of each partition's leader, for the partitions that have one."""
        v = self.version(ApiKey.METADATA, 1, 12)
        response, _ = self.call(
            MetadataRequest(topics=[MetadataRequestTopic(name=topic)], allow_auto_topic_creation=False), v
        )
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
        response, size = self.call(req, v, reuse)
        if response.error_code:
            raise RuntimeError(f"Fetch v{v} failed with error {response.error_code}")
        return {p.partition_index: p for t in response.responses for p in t.partitions}, size
