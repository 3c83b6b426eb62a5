"""The consumer embedded protocol: what classic consumers put in JoinGroup
and SyncGroup.

A classic group's coordinator treats member metadata and assignments as
opaque bytes; only a group that holds classic members inside a KIP-848
consumer group (or converts between the two kinds) must read and write
them, in Kafka's ConsumerProtocolSubscription and ConsumerProtocolAssignment
formats (never flexible; a version newer than 3 is read as version 3, the
fields only ever grew):

    Subscription  version int16, topics [string], user_data bytes?,
                  owned_partitions [topic string, partitions [int32]] (v1+),
                  generation_id int32 (v2+), rack_id string? (v3+)
    Assignment    version int16, assigned_partitions [topic string,
                  partitions [int32]], user_data bytes?

An assignment is written in the version of the member's subscription
(capped at 3), as Kafka does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pybroker.protocol import primitives as p
from pybroker.protocol.errors import DecodeError
from pybroker.protocol.primitives import INT16, INT32, Writer

from .records import _decoding, read_strings

LATEST = 3


@dataclass(frozen=True)
class Subscription:
    version: int
    topics: tuple[str, ...]
    user_data: bytes | None = None
    owned: dict[str, tuple[int, ...]] = field(default_factory=dict)
    generation: int = -1
    rack_id: str | None = None


def decode_subscription(data) -> Subscription:
    """Every field the version has; DecodeError when the bytes are not one."""
    with _decoding("consumer protocol subscription"):
        version = _version(data)
        topics, pos = read_strings(data, 2)
        user_data, pos = p.read_nullable_bytes(data, pos)
        owned: dict[str, tuple[int, ...]] = {}
        generation, rack = -1, None
        if version >= 1:
            owned, pos = _topic_partitions(data, pos)
        if version >= 2:
            (generation,) = INT32.unpack_from(data, pos)
            pos += 4
        if version >= 3:
            rack, pos = p.read_nullable_string(data, pos)
        return Subscription(version, tuple(topics), user_data, owned, generation, rack)


def metadata_version(data) -> int:
    """The version a subscription is written in (0 when unreadable)."""
    try:
        return max(INT16.unpack_from(data, 0)[0], 0)
    except struct.error:
        return 0


def decode_assignment(data) -> tuple[dict[str, tuple[int, ...]], bytes | None]:
    """(topic -> partitions, user data); DecodeError when malformed."""
    with _decoding("consumer protocol assignment"):
        _version(data)
        partitions, pos = _topic_partitions(data, 2)
        user_data, pos = p.read_nullable_bytes(data, pos)
        return partitions, user_data


def encode_assignment(partitions: dict[str, list[int]], version: int = LATEST) -> bytes:
    """An assignment without user data (the server-side assignors have none)."""
    w = Writer()
    w.buf += INT16.pack(min(max(version, 0), LATEST))
    w.buf += INT32.pack(len(partitions))
    for topic in sorted(partitions):
        p.write_string(w, topic)
        parts = sorted(partitions[topic])
        w.buf += struct.pack(f">i{len(parts)}i", len(parts), *parts)
    w.buf += b"\xff\xff\xff\xff"  # null user data
    return w.getvalue()


def _version(data) -> int:
    (version,) = INT16.unpack_from(data, 0)
    if version < 0:
        raise DecodeError(f"negative version {version}")
    return version


def _topic_partitions(data, pos: int) -> tuple[dict[str, tuple[int, ...]], int]:
    count, pos = p.read_array_length(data, pos)
    out: dict[str, tuple[int, ...]] = {}
    for _ in range(max(count, 0)):
        topic, pos = p.read_string(data, pos)
        n, pos = p.read_array_length(data, pos)
        parts, pos = p.read_int_array(data, pos, max(n, 0), "i", 4)
        out[topic] = out.get(topic, ()) + tuple(parts)
    return out, pos
