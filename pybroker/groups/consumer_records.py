"""The values of a KIP-848 consumer group's records in __consumer_offsets.

Kafka 4's group coordinator keeps a consumer group as six kinds of record,
told apart by their key version (keys in ``records.py``). Every value is
version 0 of a flexible schema (compact strings, arrays and bytes, uuids
as 16 bytes, a tagged-field section after every struct):

    3 ConsumerGroupMetadataValue        epoch int32
                                        (4.1 adds tagged MetadataHash, kept as unknown)
    4 ConsumerGroupPartitionMetadataValue
                                        topics [topic_id uuid, topic_name string,
                                        num_partitions int32, partition_metadata
                                        [partition int32, racks [string]]]
    5 ConsumerGroupMemberMetadataValue  instance_id string?, rack_id string?,
                                        client_id string, client_host string,
                                        subscribed_topic_names [string],
                                        subscribed_topic_regex string?,
                                        rebalance_timeout_ms int32,
                                        server_assignor string?,
                                        tag 0: classic_member_metadata?
                                        {session_timeout_ms int32,
                                         supported_protocols [name string, metadata bytes]}
    6 ConsumerGroupTargetAssignmentMetadataValue
                                        assignment_epoch int32
    7 ConsumerGroupTargetAssignmentMemberValue
                                        topic_partitions [topic_id uuid, partitions [int32]]
    8 ConsumerGroupCurrentMemberAssignmentValue
                                        member_epoch int32, previous_member_epoch int32,
                                        state int8 (0 stable, 1 unrevoked partitions,
                                        2 unreleased partitions), assigned_partitions
                                        and partitions_pending_revocation, each
                                        [topic_id uuid, partitions [int32]]

A tagged nullable struct is written as its tag, its size, an unsigned
varint 1 (present), then the struct. Unknown tagged fields of a value are
kept; those of nested structs are read past.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from uuid import UUID

from pybroker.protocol import primitives as p
from pybroker.protocol.errors import DecodeError, EncodeError
from pybroker.protocol.primitives import INT8, INT32, Writer

from .records import _decoding, _nullable_string, _pack, _string, _tags, read_strings

GROUP_EPOCH, PARTITION_METADATA, MEMBER_METADATA, ASSIGNMENT_EPOCH, TARGET_ASSIGNMENT, CURRENT_ASSIGNMENT = range(3, 9)
VALUE_VERSION = 0
CLASSIC_MEMBER_TAG = 0

# Kafka's MemberState values.
STATE_STABLE, STATE_UNREVOKED, STATE_UNRELEASED = 0, 1, 2

Partitions = tuple[tuple[UUID, tuple[int, ...]], ...]  # (topic id, sorted partitions), by topic id


@dataclass(frozen=True)
class EpochValue:
    """ConsumerGroupMetadataValue (3) and ConsumerGroupTargetAssignmentMetadataValue (6)."""

    epoch: int
    unknown_tags: dict[int, bytes] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TopicMetadata:
    topic_id: UUID
    name: str
    partitions: int
    racks: tuple[tuple[int, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class PartitionMetadataValue:
    topics: tuple[TopicMetadata, ...]
    unknown_tags: dict[int, bytes] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ClassicMemberMetadata:
    session_timeout_ms: int
    protocols: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class MemberMetadataValue:
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    topic_names: tuple[str, ...]
    topic_regex: str | None
    rebalance_timeout_ms: int
    server_assignor: str | None
    classic: ClassicMemberMetadata | None = None
    unknown_tags: dict[int, bytes] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TargetAssignmentValue:
    partitions: Partitions
    unknown_tags: dict[int, bytes] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class CurrentAssignmentValue:
    epoch: int
    previous_epoch: int
    state: int
    assigned: Partitions
    pending_revocation: Partitions
    unknown_tags: dict[int, bytes] | None = field(default=None, compare=False)


Value = EpochValue | PartitionMetadataValue | MemberMetadataValue | TargetAssignmentValue | CurrentAssignmentValue


def encode_value(value: Value) -> bytes:
    w = Writer()
    w.buf += struct.pack(">h", VALUE_VERSION)
    if isinstance(value, EpochValue):
        w.buf += _pack(INT32, value.epoch)
    elif isinstance(value, PartitionMetadataValue):
        p.write_compact_array_length(w, value.topics)
        for t in value.topics:
            w.buf += t.topic_id.bytes
            _string(w, t.name, True)
            w.buf += _pack(INT32, t.partitions)
            p.write_compact_array_length(w, t.racks)
            for partition, racks in t.racks:
                w.buf += _pack(INT32, partition)
                _strings(w, racks)
                w.buf.append(0)
            w.buf.append(0)
    elif isinstance(value, MemberMetadataValue):
        _nullable_string(w, value.instance_id, True)
        _nullable_string(w, value.rack_id, True)
        _string(w, value.client_id, True)
        _string(w, value.client_host, True)
        _strings(w, value.topic_names)
        _nullable_string(w, value.topic_regex, True)
        w.buf += _pack(INT32, value.rebalance_timeout_ms)
        _nullable_string(w, value.server_assignor, True)
        tags = dict(value.unknown_tags or {})
        if value.classic is not None:
            tags[CLASSIC_MEMBER_TAG] = b"\x01" + _classic_struct(value.classic)
        _tags(w, tags)
        return w.getvalue()
    elif isinstance(value, TargetAssignmentValue):
        _partitions(w, value.partitions)
    elif isinstance(value, CurrentAssignmentValue):
        w.buf += _pack(INT32, value.epoch)
        w.buf += _pack(INT32, value.previous_epoch)
        w.buf += _pack(INT8, value.state)
        _partitions(w, value.assigned)
        _partitions(w, value.pending_revocation)
    else:
        raise EncodeError(f"not a consumer group record value: {value!r}")
    _tags(w, value.unknown_tags)
    return w.getvalue()


def decode_value(kind: int, data) -> Value:
    """The value of a record whose key version is ``kind`` (3-8)."""
    with _decoding(f"consumer group record value {kind}"):
        (version,) = struct.unpack_from(">h", data, 0)
        if version != VALUE_VERSION:
            raise DecodeError(f"unknown version {version} of consumer group record value {kind}")
        pos = 2
        if kind in (GROUP_EPOCH, ASSIGNMENT_EPOCH):
            (epoch,) = INT32.unpack_from(data, pos)
            tags, pos = p.read_tagged_fields(data, pos + 4)
            return EpochValue(epoch, tags)
        if kind == PARTITION_METADATA:
            count, pos = p.read_compact_array_length(data, pos)
            topics = []
            for _ in range(max(count, 0)):
                topic_id, pos = p.read_uuid(data, pos)
                name, pos = p.read_compact_string(data, pos)
                (partitions,) = INT32.unpack_from(data, pos)
                n, pos = p.read_compact_array_length(data, pos + 4)
                racks = []
                for _ in range(max(n, 0)):
                    (partition,) = INT32.unpack_from(data, pos)
                    names, pos = read_strings(data, pos + 4, True)
                    _, pos = p.read_tagged_fields(data, pos)
                    racks.append((partition, tuple(names)))
                _, pos = p.read_tagged_fields(data, pos)
                topics.append(TopicMetadata(topic_id, name, partitions, tuple(racks)))
            tags, pos = p.read_tagged_fields(data, pos)
            return PartitionMetadataValue(tuple(topics), tags)
        if kind == MEMBER_METADATA:
            instance_id, pos = p.read_compact_nullable_string(data, pos)
            rack_id, pos = p.read_compact_nullable_string(data, pos)
            client_id, pos = p.read_compact_string(data, pos)
            client_host, pos = p.read_compact_string(data, pos)
            names, pos = read_strings(data, pos, True)
            regex, pos = p.read_compact_nullable_string(data, pos)
            (rebalance_timeout,) = INT32.unpack_from(data, pos)
            assignor, pos = p.read_compact_nullable_string(data, pos + 4)
            tags, pos = p.read_tagged_fields(data, pos)
            classic = None
            if tags and CLASSIC_MEMBER_TAG in tags:
                classic = _read_classic(tags.pop(CLASSIC_MEMBER_TAG))
            return MemberMetadataValue(
                instance_id, rack_id, client_id, client_host, tuple(names), regex, rebalance_timeout, assignor,
                classic, tags or None,
            )
        if kind == TARGET_ASSIGNMENT:
            partitions, pos = _read_partitions(data, pos)
            tags, pos = p.read_tagged_fields(data, pos)
            return TargetAssignmentValue(partitions, tags)
        if kind == CURRENT_ASSIGNMENT:
            epoch, previous = struct.unpack_from(">ii", data, pos)
            (state,) = INT8.unpack_from(data, pos + 8)
            assigned, pos = _read_partitions(data, pos + 9)
            pending, pos = _read_partitions(data, pos)
            tags, pos = p.read_tagged_fields(data, pos)
            return CurrentAssignmentValue(epoch, previous, state, assigned, pending, tags)
        raise DecodeError(f"key version {kind} is not a consumer group record")


# -- helpers ---------------------------------------------------------------------------


def _strings(w: Writer, items) -> None:
    p.write_compact_array_length(w, items)
    for s in items:
        _string(w, s, True)


def _partitions(w: Writer, partitions: Partitions) -> None:
    p.write_compact_array_length(w, partitions)
    for topic_id, parts in partitions:
        w.buf += topic_id.bytes
        p.write_compact_array_length(w, parts)
        for part in parts:
            w.buf += _pack(INT32, part)
        w.buf.append(0)


def _read_partitions(data, pos: int) -> tuple[Partitions, int]:
    n, pos = p.read_compact_array_length(data, pos)
    out = []
    for _ in range(max(n, 0)):
        topic_id, pos = p.read_uuid(data, pos)
        count, pos = p.read_compact_array_length(data, pos)
        parts, pos = p.read_int_array(data, pos, max(count, 0), "i", 4)
        _, pos = p.read_tagged_fields(data, pos)
        out.append((topic_id, tuple(parts)))
    return tuple(out), pos


def _classic_struct(classic: ClassicMemberMetadata) -> bytes:
    w = Writer()
    w.buf += _pack(INT32, classic.session_timeout_ms)
    p.write_compact_array_length(w, classic.protocols)
    for name, metadata in classic.protocols:
        _string(w, name, True)
        p.write_compact_bytes(w, metadata)
        w.buf.append(0)
    w.buf.append(0)
    return w.getvalue()


def _read_classic(data: bytes) -> ClassicMemberMetadata | None:
    present, pos = p.read_uvarint(data, 0)
    if present == 0:
        return None
    (session_timeout,) = INT32.unpack_from(data, pos)
    n, pos = p.read_compact_array_length(data, pos + 4)
    protocols = []
    for _ in range(max(n, 0)):
        name, pos = p.read_compact_string(data, pos)
        metadata, pos = p.read_compact_bytes(data, pos)
        _, pos = p.read_tagged_fields(data, pos)
        protocols.append((name, metadata))
    return ClassicMemberMetadata(session_timeout, tuple(protocols))
