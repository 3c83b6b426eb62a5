"""The __consumer_offsets record codecs: every version round-trips, the
versions Kafka writes match bytes worked out by hand from its schemas, and
garbage fails as DecodeError."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pybroker.protocol.errors import DecodeError, EncodeError
from pybroker.groups.records import (
    GroupMetadataKey,
    GroupMetadataValue,
    MemberMetadata,
    OffsetCommitKey,
    OffsetCommitValue,
    decode_group_value,
    decode_key,
    decode_offset_value,
    encode_group_key,
    encode_group_value,
    encode_offset_key,
    encode_offset_value,
    subscribed_topics,
)

# -- bytes by hand -------------------------------------------------------------------


def test_offset_key_v1_bytes():
    data = encode_offset_key("grp", "tp", 7)
    assert data == b"\x00\x01" + b"\x00\x03grp" + b"\x00\x02tp" + b"\x00\x00\x00\x07"
    assert decode_key(data) == OffsetCommitKey("grp", "tp", 7)


def test_offset_key_v0_reads():
    assert decode_key(b"\x00\x00\x00\x01g\x00\x01t\xff\xff\xff\xff") == OffsetCommitKey("g", "t", -1)


def test_group_key_v2_bytes():
    assert encode_group_key("g1") == b"\x00\x02\x00\x02g1"
    assert decode_key(b"\x00\x02\x00\x02g1") == GroupMetadataKey("g1")


@pytest.mark.parametrize("version", [9, 10, 100, 32767])
def test_unknown_key_versions_are_skipped(version):
    assert decode_key(struct.pack(">h", version) + b"\x00\x01x") is None


def test_offset_value_v3_bytes():
    value = OffsetCommitValue(offset=42, leader_epoch=5, metadata="m", commit_timestamp=1000)
    expected = (
        b"\x00\x03"  # version
        + b"\x00\x00\x00\x00\x00\x00\x00\x2a"  # offset
        + b"\x00\x00\x00\x05"  # leader epoch
        + b"\x00\x01m"  # metadata
        + b"\x00\x00\x00\x00\x00\x00\x03\xe8"  # commit timestamp
    )
    assert encode_offset_value(value) == expected
    assert decode_offset_value(expected) == value


def test_offset_value_with_expire_timestamp_is_written_as_v1():
    value = OffsetCommitValue(offset=1, metadata="", commit_timestamp=2, expire_timestamp=3)
    data = encode_offset_value(value)
    assert data == b"\x00\x01" + struct.pack(">q", 1) + b"\x00\x00" + struct.pack(">qq", 2, 3)
    assert decode_offset_value(data) == value


def test_offset_value_v4_flexible_bytes():
    value = OffsetCommitValue(offset=1, leader_epoch=2, metadata="ab", commit_timestamp=3)
    data = encode_offset_value(value, 4)
    assert data == b"\x00\x04" + struct.pack(">qi", 1, 2) + b"\x03ab" + struct.pack(">q", 3) + b"\x00"
    assert decode_offset_value(data) == value


def test_group_value_v3_bytes():
    value = GroupMetadataValue(
        protocol_type="consumer",
        generation=3,
        protocol="range",
        leader="m1",
        current_state_timestamp=99,
        members=[MemberMetadata("m1", None, "c", "/h", 300, 100, b"S", b"AS")],
    )
    expected = (
        b"\x00\x03"
        + b"\x00\x08consumer"
        + b"\x00\x00\x00\x03"
        + b"\x00\x05range"
        + b"\x00\x02m1"
        + struct.pack(">q", 99)
        + b"\x00\x00\x00\x01"  # one member
        + b"\x00\x02m1"
        + b"\xff\xff"  # no group.instance.id
        + b"\x00\x01c"
        + b"\x00\x02/h"
        + struct.pack(">ii", 300, 100)  # rebalance, session timeouts
        + b"\x00\x00\x00\x01S"
        + b"\x00\x00\x00\x02AS"
    )
    assert encode_group_value(value) == expected
    assert decode_group_value(expected) == value


def test_group_value_v0_member_takes_session_timeout_as_rebalance_timeout():
    data = (
        b"\x00\x00" + b"\x00\x08consumer" + b"\x00\x00\x00\x01" + b"\xff\xff" + b"\xff\xff"
        + b"\x00\x00\x00\x01" + b"\x00\x01m" + b"\x00\x01c" + b"\x00\x01h" + struct.pack(">i", 6000)
        + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
    )
    value = decode_group_value(data)
    assert value.protocol is None and value.leader is None and value.current_state_timestamp == -1
    assert value.members == [MemberMetadata("m", None, "c", "h", 6000, 6000, b"", b"")]


def test_flexible_values_keep_unknown_tags():
    value = OffsetCommitValue(1, 2, "x", 3, unknown_tags={5: b"\x01\x02"})
    again = decode_offset_value(encode_offset_value(value, 4))
    assert again.unknown_tags == {5: b"\x01\x02"}
    member = MemberMetadata("m", "i", "c", "h", 1, 2, b"s", b"a", unknown_tags={0: b"z"})
    group = GroupMetadataValue("consumer", 1, "p", "m", 5, [member], unknown_tags={9: b""})
    assert decode_group_value(encode_group_value(group, 4)) == group


# -- round trips of every version -------------------------------------------------------

texts = st.text(max_size=20)
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)


@given(st.sampled_from([0, 1]), texts, texts, int32)
def test_offset_key_round_trip(version, group, topic, partition):
    assert decode_key(encode_offset_key(group, topic, partition, version)) == OffsetCommitKey(group, topic, partition)


@given(texts)
def test_group_key_round_trip(group):
    assert decode_key(encode_group_key(group)) == GroupMetadataKey(group)


@given(st.integers(0, 4), int64, int32, texts, int64, st.integers(0, 2**62))
def test_offset_value_round_trip(version, offset, epoch, metadata, commit, expire):
    value = OffsetCommitValue(
        offset,
        epoch if version >= 3 else -1,
        metadata,
        commit,
        expire if version == 1 else -1,
    )
    assert decode_offset_value(encode_offset_value(value, version)) == value


members = st.builds(
    MemberMetadata,
    texts,
    st.none() | texts,
    texts,
    texts,
    int32,
    int32,
    st.binary(max_size=30),
    st.binary(max_size=30),
)


@given(st.integers(0, 4), texts, int32, st.none() | texts, st.none() | texts, int64, st.lists(members, max_size=4))
def test_group_value_round_trip(version, ptype, generation, protocol, leader, ts, ms):
    for m in ms:
        if version < 3:
            m.group_instance_id = None
        if version < 1:
            m.rebalance_timeout = m.session_timeout
    value = GroupMetadataValue(ptype, generation, protocol, leader, ts if version >= 2 else -1, ms)
    assert decode_group_value(encode_group_value(value, version)) == value


def test_older_versions_drop_ignorable_fields():
    value = OffsetCommitValue(1, leader_epoch=9, metadata="", commit_timestamp=2)
    assert decode_offset_value(encode_offset_value(value, 2)).leader_epoch == -1
    group = GroupMetadataValue("", 0, None, None, 77, [MemberMetadata("m", "inst", "c", "h", 5, 6, b"", b"")])
    old = decode_group_value(encode_group_value(group, 1))
    assert old.current_state_timestamp == -1 and old.members[0].group_instance_id is None


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "decode, data",
    [
        (decode_key, b""),
        (decode_key, b"\x00\x01\x00\x05ab"),
        (decode_key, b"\xff\xff"),
        (decode_offset_value, b"\x00\x03\x00"),
        (decode_offset_value, b"\x00\x09" + b"\x00" * 30),
        (decode_offset_value, b"\x00\x00" + b"\x00" * 8 + b"\x00\x02\xff\xfe" + b"\x00" * 8),
        (decode_group_value, b"\x00\x03\x00\x01c\x00\x00\x00\x01\xff\xff\xff\xff" + b"\x00" * 8 + b"\x7f\xff\xff\xff"),
        (decode_group_value, b"\x00\x07"),
    ],
)
def test_malformed_records_raise_decode_error(decode, data):
    with pytest.raises(DecodeError):
        decode(data)


def test_unwritable_values_raise_encode_error():
    with pytest.raises(EncodeError):
        encode_offset_key("g" * 40000, "t", 0)
    with pytest.raises(EncodeError):
        encode_offset_value(OffsetCommitValue(2**63), 3)
    with pytest.raises(EncodeError):
        encode_offset_value(OffsetCommitValue(0), 5)


# -- consumer subscriptions ------------------------------------------------------------


def test_subscribed_topics_of_consumer_protocol_subscriptions():
    v0 = b"\x00\x00" + b"\x00\x00\x00\x02" + b"\x00\x01a" + b"\x00\x02bb" + b"\xff\xff\xff\xff"
    assert subscribed_topics(v0) == {"a", "bb"}
    # v3 carries owned partitions, generation and rack after the topics.
    v3 = b"\x00\x03" + b"\x00\x00\x00\x01" + b"\x00\x01t" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x01" + b"\xff\xff"
    assert subscribed_topics(v3) == {"t"}
    assert subscribed_topics(b"") is None
    assert subscribed_topics(b"\x00\x00\x00\x00\x00\x05\x00\x01") is None
    assert subscribed_topics(b"\xff\xff\x00\x00\x00\x00") is None
