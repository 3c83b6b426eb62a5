"""The KIP-848 consumer group records of __consumer_offsets: keys and values
match bytes worked out by hand from Kafka's schemas, every value
round-trips, and garbage fails as DecodeError."""

import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pybroker.protocol.errors import DecodeError, EncodeError
from pybroker.groups.consumer_records import (
    ASSIGNMENT_EPOCH,
    CURRENT_ASSIGNMENT,
    GROUP_EPOCH,
    MEMBER_METADATA,
    PARTITION_METADATA,
    TARGET_ASSIGNMENT,
    ClassicMemberMetadata,
    CurrentAssignmentValue,
    EpochValue,
    MemberMetadataValue,
    PartitionMetadataValue,
    TargetAssignmentValue,
    TopicMetadata,
    decode_value,
    encode_value,
)
from pybroker.groups.records import ConsumerGroupKey, decode_key, encode_consumer_key

TID = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")


def test_keys_bytes():
    assert encode_consumer_key(ConsumerGroupKey(GROUP_EPOCH, "g")) == b"\x00\x03\x00\x01g"
    member = ConsumerGroupKey(CURRENT_ASSIGNMENT, "g", "m1")
    assert encode_consumer_key(member) == b"\x00\x08\x00\x01g\x00\x02m1"
    for kind in range(3, 9):
        key = ConsumerGroupKey(kind, "grp", "m" if kind in (5, 7, 8) else None)
        assert decode_key(encode_consumer_key(key)) == key
    with pytest.raises(EncodeError):
        encode_consumer_key(ConsumerGroupKey(9, "g"))
    with pytest.raises(DecodeError):
        decode_key(b"\x00\x05\x00\x01g")  # a member key without its member


def test_epoch_values_bytes_and_unknown_tags():
    assert encode_value(EpochValue(7)) == b"\x00\x00" + b"\x00\x00\x00\x07" + b"\x00"
    # Kafka 4.1's tagged MetadataHash is kept, not understood.
    data = b"\x00\x00\x00\x00\x00\x07" + b"\x01\x00\x08" + struct.pack(">q", 12345)
    value = decode_value(GROUP_EPOCH, data)
    assert value == EpochValue(7) and value.unknown_tags == {0: struct.pack(">q", 12345)}
    assert encode_value(value) == data
    assert decode_value(ASSIGNMENT_EPOCH, encode_value(EpochValue(-1))) == EpochValue(-1)


def test_partition_metadata_bytes():
    value = PartitionMetadataValue((TopicMetadata(TID, "t", 3, ((0, ("r1",)),)),))
    expected = (
        b"\x00\x00"
        + b"\x02"  # one topic
        + TID.bytes
        + b"\x02t"
        + b"\x00\x00\x00\x03"
        + b"\x02" + b"\x00\x00\x00\x00" + b"\x02" + b"\x03r1" + b"\x00"  # partition 0 on rack r1
        + b"\x00"  # the topic's tags
        + b"\x00"
    )
    assert encode_value(value) == expected
    assert decode_value(PARTITION_METADATA, expected) == value


def test_member_metadata_bytes_with_classic_member_metadata():
    classic = ClassicMemberMetadata(6000, (("range", b"SUB"),))
    value = MemberMetadataValue(None, "rack", "client", "/h", ("a", "b"), None, 30000, "uniform", classic)
    struct_bytes = struct.pack(">i", 6000) + b"\x02" + b"\x06range" + b"\x04SUB" + b"\x00" + b"\x00"
    expected = (
        b"\x00\x00"
        + b"\x00"  # no instance id
        + b"\x05rack"
        + b"\x07client"
        + b"\x03/h"
        + b"\x03\x02a\x02b"
        + b"\x00"  # no regex
        + struct.pack(">i", 30000)
        + b"\x08uniform"
        + b"\x01"  # one tagged field
        + b"\x00"  # tag 0
        + bytes([len(struct_bytes) + 1])
        + b"\x01"  # present
        + struct_bytes
    )
    assert encode_value(value) == expected
    assert decode_value(MEMBER_METADATA, expected) == value
    plain = MemberMetadataValue("inst", None, "c", "/h", (), "^t.*", -1, None)
    assert encode_value(plain).endswith(struct.pack(">i", -1) + b"\x00" + b"\x00")
    assert decode_value(MEMBER_METADATA, encode_value(plain)) == plain


def test_assignment_values_bytes():
    target = TargetAssignmentValue(((TID, (0, 2)),))
    topic = TID.bytes + b"\x03" + struct.pack(">ii", 0, 2) + b"\x00"
    assert encode_value(target) == b"\x00\x00" + b"\x02" + topic + b"\x00"
    assert decode_value(TARGET_ASSIGNMENT, encode_value(target)) == target
    current = CurrentAssignmentValue(5, 4, 1, ((TID, (0,)),), ((TID, (2,)),))
    expected = (
        b"\x00\x00" + struct.pack(">iib", 5, 4, 1)
        + b"\x02" + TID.bytes + b"\x02" + struct.pack(">i", 0) + b"\x00"
        + b"\x02" + TID.bytes + b"\x02" + struct.pack(">i", 2) + b"\x00"
        + b"\x00"
    )
    assert encode_value(current) == expected
    assert decode_value(CURRENT_ASSIGNMENT, expected) == current


uuids = st.uuids()
names = st.text(max_size=10)
int32 = st.integers(-(2**31), 2**31 - 1)
parts = st.lists(st.tuples(uuids, st.lists(int32, max_size=4).map(tuple)), max_size=3).map(tuple)
values = st.one_of(
    st.builds(EpochValue, int32),
    st.builds(
        PartitionMetadataValue,
        st.lists(st.builds(TopicMetadata, uuids, names, int32, st.lists(st.tuples(int32, st.lists(names, max_size=2).map(tuple)), max_size=2).map(tuple)), max_size=3).map(tuple),
    ),
    st.builds(
        MemberMetadataValue,
        st.none() | names, st.none() | names, names, names, st.lists(names, max_size=3).map(tuple), st.none() | names,
        int32, st.none() | names,
        st.none() | st.builds(ClassicMemberMetadata, int32, st.lists(st.tuples(names, st.binary(max_size=8)), max_size=2).map(tuple)),
    ),
    st.builds(TargetAssignmentValue, parts),
    st.builds(CurrentAssignmentValue, int32, int32, st.integers(-128, 127), parts, parts),
)
KIND = {EpochValue: GROUP_EPOCH, PartitionMetadataValue: PARTITION_METADATA, MemberMetadataValue: MEMBER_METADATA,
        TargetAssignmentValue: TARGET_ASSIGNMENT, CurrentAssignmentValue: CURRENT_ASSIGNMENT}


@given(values)
def test_values_round_trip(value):
    assert decode_value(KIND[type(value)], encode_value(value)) == value


@pytest.mark.parametrize(
    "kind, data",
    [
        (GROUP_EPOCH, b"\x00\x00\x00"),
        (GROUP_EPOCH, b"\x00\x01\x00\x00\x00\x01\x00"),  # an unknown value version
        (MEMBER_METADATA, b"\x00\x00\x00\x00\x7fclient"),
        (CURRENT_ASSIGNMENT, b"\x00\x00" + b"\x00" * 9 + b"\xff\xff\xff\xff\x0f"),
        (TARGET_ASSIGNMENT, b"\x00\x00\x02" + b"\x00" * 5),
        (PARTITION_METADATA, b"\x00\x00\x02" + b"\x00" * 16 + b"\x05ab"),
        (9, b"\x00\x00"),
    ],
)
def test_malformed_values_raise_decode_error(kind, data):
    with pytest.raises(DecodeError):
        decode_value(kind, data)
