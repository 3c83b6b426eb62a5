"""The records of ``__consumer_offsets``, in Kafka's formats.

Every record's key is an int16 key version and a body; its value is an
int16 value version and a body, or null (a tombstone: the key is deleted).
The key version says what the record is:

    key 0/1  OffsetCommitKey     group string, topic string, partition int32
    key 2    GroupMetadataKey    group string
    key 3-8  ConsumerGroupKey    group string, member_id string (5, 7, 8):
             a KIP-848 consumer group's records (values in consumer_records.py)
             3 group epoch, 4 partition metadata, 5 member metadata,
             6 target assignment epoch, 7 a member's target assignment,
             8 a member's current assignment
    key 9+   share and streams groups' records: not ours, skipped on load

    OffsetCommitValue
      v0  offset int64, metadata string, commit_timestamp int64
      v1  v0 + expire_timestamp int64 (only when the commit set a retention)
      v2  as v0
      v3  offset, leader_epoch int32, metadata, commit_timestamp
      v4  as v3, flexible (compact strings, trailing tagged fields)

    GroupMetadataValue
      protocol_type string, generation int32, protocol string?, leader string?,
      current_state_timestamp int64 (v2+),
      members [member_id, group_instance_id string? (v3+), client_id,
               client_host, rebalance_timeout int32 (v1+), session_timeout
               int32, subscription bytes, assignment bytes]
      v4 flexible: compact forms and a tagged section after every struct

Everything is read; Kafka's choices are written: key v1, offset value v3
(v1 when an expire timestamp must be kept), group value v3. Fields a
version lacks are all "ignorable" in Kafka's schemas, so writing an older
version drops them; decoders fill the schema defaults (v0 group members
take their session timeout as rebalance timeout, as Kafka does). Unknown
tagged fields of a v4 value are kept and written back.

Also here: the consumer protocol's subscription, read just far enough to
know which topics a member subscribes to (for offset retention and
OffsetDelete).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pybroker.protocol import primitives as p
from pybroker.protocol.errors import DecodeError, EncodeError
from pybroker.protocol.errors import decoding as _decoding
from pybroker.protocol.primitives import INT16, INT32, INT64, Writer

OFFSET_KEY_VERSIONS = (0, 1)
GROUP_KEY_VERSION = 2
CONSUMER_KEY_VERSIONS = range(3, 9)
MEMBER_KEY_VERSIONS = (5, 7, 8)  # the consumer group keys that name a member too
OFFSET_VALUE_VERSIONS = range(5)
GROUP_VALUE_VERSIONS = range(5)
FLEXIBLE = 4


@dataclass(frozen=True, slots=True)
class OffsetCommitKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupKey:
    kind: int  # the key version: which of a consumer group's records
    group: str
    member_id: str | None = None


@dataclass(slots=True)
class OffsetCommitValue:
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp: int = -1
    expire_timestamp: int = -1
    unknown_tags: dict[int, bytes] | None = None


@dataclass(slots=True)
class MemberMetadata:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout: int
    session_timeout: int
    subscription: bytes
    assignment: bytes
    unknown_tags: dict[int, bytes] | None = None


@dataclass(slots=True)
class GroupMetadataValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int = -1
    members: list[MemberMetadata] = field(default_factory=list)
    unknown_tags: dict[int, bytes] | None = None


# -- keys ------------------------------------------------------------------------


def encode_offset_key(group: str, topic: str, partition: int, version: int = 1) -> bytes:
    if version not in OFFSET_KEY_VERSIONS:
        raise EncodeError(f"OffsetCommitKey has no version {version}")
    w = Writer()
    w.buf += INT16.pack(version)
    _string(w, group)
    _string(w, topic)
    w.buf += _pack(INT32, partition)
    return w.getvalue()


def encode_group_key(group: str) -> bytes:
    w = Writer()
    w.buf += INT16.pack(GROUP_KEY_VERSION)
    _string(w, group)
    return w.getvalue()


def encode_consumer_key(key: ConsumerGroupKey) -> bytes:
    if key.kind not in CONSUMER_KEY_VERSIONS:
        raise EncodeError(f"no consumer group record has key version {key.kind}")
    w = Writer()
    w.buf += INT16.pack(key.kind)
    _string(w, key.group)
    if key.kind in MEMBER_KEY_VERSIONS:
        _string(w, key.member_id)
    return w.getvalue()


def decode_key(data) -> OffsetCommitKey | GroupMetadataKey | ConsumerGroupKey | None:
    """The key, or None for a record type this broker does not keep
    (key version 9 and up). Malformed bytes raise DecodeError."""
    with _decoding("key"):
        (version,) = INT16.unpack_from(data, 0)
        pos = 2
        if version in OFFSET_KEY_VERSIONS:
            group, pos = p.read_string(data, pos)
            topic, pos = p.read_string(data, pos)
            (partition,) = INT32.unpack_from(data, pos)
            return OffsetCommitKey(group, topic, partition)
        if version == GROUP_KEY_VERSION:
            group, pos = p.read_string(data, pos)
            return GroupMetadataKey(group)
        if version in CONSUMER_KEY_VERSIONS:
            group, pos = p.read_string(data, pos)
            member_id = None
            if version in MEMBER_KEY_VERSIONS:
                member_id, pos = p.read_string(data, pos)
            return ConsumerGroupKey(version, group, member_id)
        if version < 0:
            raise DecodeError(f"negative key version {version}")
        return None


# -- offset values ---------------------------------------------------------------


def offset_value_version(value: OffsetCommitValue) -> int:
    """Kafka's choice: v1 keeps an explicit expire timestamp, v3 otherwise."""
    return 1 if value.expire_timestamp >= 0 else 3


def encode_offset_value(value: OffsetCommitValue, version: int | None = None) -> bytes:
    version = offset_value_version(value) if version is None else version
    if version not in OFFSET_VALUE_VERSIONS:
        raise EncodeError(f"OffsetCommitValue has no version {version}")
    w = Writer()
    w.buf += INT16.pack(version)
    w.buf += _pack(INT64, value.offset)
    if version >= 3:
        w.buf += _pack(INT32, value.leader_epoch)
    _string(w, value.metadata, version >= FLEXIBLE)
    w.buf += _pack(INT64, value.commit_timestamp)
    if version == 1:
        w.buf += _pack(INT64, value.expire_timestamp)
    if version >= FLEXIBLE:
        _tags(w, value.unknown_tags)
    return w.getvalue()


def decode_offset_value(data) -> OffsetCommitValue:
    with _decoding("OffsetCommitValue"):
        (version,) = INT16.unpack_from(data, 0)
        if version not in OFFSET_VALUE_VERSIONS:
            raise DecodeError(f"unknown OffsetCommitValue version {version}")
        flexible = version >= FLEXIBLE
        (offset,) = INT64.unpack_from(data, 2)
        pos = 10
        leader_epoch = -1
        if version >= 3:
            (leader_epoch,) = INT32.unpack_from(data, pos)
            pos += 4
        metadata, pos = (p.read_compact_string if flexible else p.read_string)(data, pos)
        (commit_timestamp,) = INT64.unpack_from(data, pos)
        pos += 8
        expire_timestamp = -1
        if version == 1:
            (expire_timestamp,) = INT64.unpack_from(data, pos)
            pos += 8
        tags = None
        if flexible:
            tags, pos = p.read_tagged_fields(data, pos)
        return OffsetCommitValue(offset, leader_epoch, metadata, commit_timestamp, expire_timestamp, tags)


# -- group values ----------------------------------------------------------------


def encode_group_value(value: GroupMetadataValue, version: int = 3) -> bytes:
    if version not in GROUP_VALUE_VERSIONS:
        raise EncodeError(f"GroupMetadataValue has no version {version}")
    flexible = version >= FLEXIBLE
    w = Writer()
    w.buf += INT16.pack(version)
    _string(w, value.protocol_type, flexible)
    w.buf += _pack(INT32, value.generation)
    _nullable_string(w, value.protocol, flexible)
    _nullable_string(w, value.leader, flexible)
    if version >= 2:
        w.buf += _pack(INT64, value.current_state_timestamp)
    if flexible:
        p.write_compact_array_length(w, value.members)
    else:
        p.write_array_length(w, value.members)
    for m in value.members:
        _string(w, m.member_id, flexible)
        if version >= 3:
            _nullable_string(w, m.group_instance_id, flexible)
        _string(w, m.client_id, flexible)
        _string(w, m.client_host, flexible)
        if version >= 1:
            w.buf += _pack(INT32, m.rebalance_timeout)
        w.buf += _pack(INT32, m.session_timeout)
        for blob in (m.subscription, m.assignment):
            (p.write_compact_bytes if flexible else p.write_bytes)(w, blob)
        if flexible:
            _tags(w, m.unknown_tags)
    if flexible:
        _tags(w, value.unknown_tags)
    return w.getvalue()


def decode_group_value(data) -> GroupMetadataValue:
    with _decoding("GroupMetadataValue"):
        (version,) = INT16.unpack_from(data, 0)
        if version not in GROUP_VALUE_VERSIONS:
            raise DecodeError(f"unknown GroupMetadataValue version {version}")
        flexible = version >= FLEXIBLE
        string = p.read_compact_string if flexible else p.read_string
        nullable = p.read_compact_nullable_string if flexible else p.read_nullable_string
        blob = p.read_compact_bytes if flexible else p.read_bytes
        pos = 2
        protocol_type, pos = string(data, pos)
        (generation,) = INT32.unpack_from(data, pos)
        pos += 4
        protocol, pos = nullable(data, pos)
        leader, pos = nullable(data, pos)
        state_timestamp = -1
        if version >= 2:
            (state_timestamp,) = INT64.unpack_from(data, pos)
            pos += 8
        count, pos = (p.read_compact_array_length if flexible else p.read_array_length)(data, pos)
        if count < 0:
            raise DecodeError("members serialized as null")
        members = []
        for _ in range(count):
            member_id, pos = string(data, pos)
            instance_id = None
            if version >= 3:
                instance_id, pos = nullable(data, pos)
            client_id, pos = string(data, pos)
            client_host, pos = string(data, pos)
            rebalance_timeout = None
            if version >= 1:
                (rebalance_timeout,) = INT32.unpack_from(data, pos)
                pos += 4
            (session_timeout,) = INT32.unpack_from(data, pos)
            pos += 4
            subscription, pos = blob(data, pos)
            assignment, pos = blob(data, pos)
            tags = None
            if flexible:
                tags, pos = p.read_tagged_fields(data, pos)
            members.append(
                MemberMetadata(
                    member_id, instance_id, client_id, client_host,
                    session_timeout if rebalance_timeout is None else rebalance_timeout,
                    session_timeout, subscription, assignment, tags,
                )
            )
        tags = None
        if flexible:
            tags, pos = p.read_tagged_fields(data, pos)
        return GroupMetadataValue(protocol_type, generation, protocol, leader, state_timestamp, members, tags)


# -- the consumer protocol's subscription ----------------------------------------------


def subscribed_topics(subscription) -> set[str] | None:
    """The topics of a ConsumerProtocolSubscription (int16 version, then
    topics []string in every version; what follows does not matter here),
    or None when the bytes are not one."""
    try:
        (version,) = INT16.unpack_from(subscription, 0)
        if version < 0:
            return None
        count, pos = p.read_array_length(subscription, 2)
        if count < 0:
            return None
        topics = set()
        for _ in range(count):
            topic, pos = p.read_string(subscription, pos)
            topics.add(topic)
        return topics
    except (struct.error, DecodeError, UnicodeDecodeError):
        return None


# -- helpers ---------------------------------------------------------------------


def read_strings(data, pos: int, flexible: bool = False) -> tuple[list[str], int]:
    """An array of strings (compact forms when ``flexible``); null reads as empty."""
    count, pos = (p.read_compact_array_length if flexible else p.read_array_length)(data, pos)
    read = p.read_compact_string if flexible else p.read_string
    out = []
    for _ in range(max(count, 0)):
        s, pos = read(data, pos)
        out.append(s)
    return out, pos


def _pack(fmt: struct.Struct, value: int) -> bytes:
    try:
        return fmt.pack(value)
    except struct.error as e:
        raise EncodeError(f"value {value!r} out of range: {e}") from None


def _string(w: Writer, s: str, flexible: bool = False) -> None:
    if s is None:
        raise EncodeError("a non-nullable string is None")
    _nullable_string(w, s, flexible)


def _nullable_string(w: Writer, s: str | None, flexible: bool = False) -> None:
    try:
        (p.write_compact_nullable_string if flexible else p.write_nullable_string)(w, s)
    except (struct.error, UnicodeEncodeError) as e:
        raise EncodeError(f"cannot write string: {e}") from None


def _tags(w: Writer, tags: dict[int, bytes] | None) -> None:
    if tags:
        p.write_tagged_fields(w, list(tags.items()))
    else:
        w.buf.append(0)
