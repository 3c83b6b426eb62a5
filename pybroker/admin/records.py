"""Records as the CLI writes and shows them.

Keys are spread over partitions as Kafka's Java client does (murmur2 of the
key bytes, positive, modulo the partition count), so the CLI and a Java,
librdkafka (``murmur2_random``) or kafka-python producer put one key in the
same partition.

Bytes are shown as UTF-8 text when they decode as UTF-8; otherwise, in JSON,
as base64 with ``"<field>_encoding": "base64"`` beside them, and in text
output with invalid bytes escaped (``\\xff``) as Python's
``backslashreplace`` does.
"""

from __future__ import annotations

import base64

from pybroker.protocol.record_batch import Record

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` (seed 0x9747b28c), as a signed int32."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, count: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % count


def text(data: bytes | None) -> str:
    return "null" if data is None else data.decode("utf-8", "backslashreplace")


def json_field(out: dict, name: str, data: bytes | None) -> None:
    """``out[name]``: the text, null, or base64 with ``<name>_encoding``."""
    if data is None:
        out[name] = None
        return
    try:
        out[name] = data.decode("utf-8")
    except UnicodeDecodeError:
        out[name] = base64.b64encode(data).decode("ascii")
        out[f"{name}_encoding"] = "base64"


def record_json(topic: str, partition: int, record: Record, timestamp_type: int) -> dict:
    out: dict = {"topic": topic, "partition": partition, "offset": record.offset, "timestamp": record.timestamp,
                 "timestamp_type": "LogAppendTime" if timestamp_type else "CreateTime"}
    json_field(out, "key", record.key)
    json_field(out, "value", record.value)
    headers = []
    for key, value in record.headers:
        header = {"key": key}
        json_field(header, "value", value)
        headers.append(header)
    out["headers"] = headers
    return out


def parse_pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    """``k=v`` strings (a value may contain ``=``); ValueError naming ``what``."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} '{item}' is not key=value")
        pairs.append((key, value))
    return pairs
