"""``__transaction_state`` records in Kafka's layout: a key and both value
versions byte for byte, round trips, tombstones, the KIP-890 tags and
unknown tags kept, and malformed bytes refused as DecodeError."""

from __future__ import annotations

import struct

import pytest

from pybroker.protocol.errors import DecodeError, EncodeError
from pybroker.txn.records import TxnLogValue, decode_key, decode_value, encode_key, encode_value


def test_the_key_is_a_version_and_the_transactional_id():
    assert encode_key("copier-1") == struct.pack(">hh", 0, 8) + b"copier-1"
    assert decode_key(encode_key("copier-1")) == "copier-1"
    assert decode_key(struct.pack(">hh", 1, 1) + b"x") is None  # a newer key: not ours
    with pytest.raises(DecodeError):
        decode_key(struct.pack(">hh", 0, 9) + b"short")


VALUE = TxnLogValue(
    producer_id=4000,
    producer_epoch=3,
    timeout_ms=60000,
    state=1,
    partitions={"out": [0, 2]},
    last_update_ms=1_700_000_000_123,
    start_ms=1_700_000_000_000,
)


def test_version_0_byte_for_byte():
    expected = (
        struct.pack(">hqhib", 0, 4000, 3, 60000, 1)
        + struct.pack(">i", 1)
        + struct.pack(">h", 3)
        + b"out"
        + struct.pack(">iii", 2, 0, 2)
        + struct.pack(">qq", 1_700_000_000_123, 1_700_000_000_000)
    )
    assert encode_value(VALUE) == encode_value(VALUE, 0) == expected  # no tags: v0
    assert decode_value(expected) == VALUE


def test_version_1_byte_for_byte_with_its_tags():
    value = TxnLogValue(**{**_fields(VALUE), "previous_producer_id": 3999, "client_txn_version": 2})
    expected = (
        struct.pack(">hqhib", 1, 4000, 3, 60000, 1)
        + bytes([2])  # one topic, compact
        + bytes([4])
        + b"out"
        + bytes([3])  # two partitions, compact
        + struct.pack(">ii", 0, 2)
        + bytes([0])  # the topic entry's tags
        + struct.pack(">qq", 1_700_000_000_123, 1_700_000_000_000)
        + bytes([2, 0, 8])
        + struct.pack(">q", 3999)
        + bytes([2, 2])
        + struct.pack(">h", 2)
    )
    assert encode_value(value) == expected  # tags: v1
    assert decode_value(expected) == value


def _fields(value: TxnLogValue) -> dict:
    return {name: getattr(value, name) for name in TxnLogValue.__slots__}


@pytest.mark.parametrize("version", [0, 1])
def test_an_empty_transaction_has_null_partitions(version):
    empty = TxnLogValue(7, 0, 10000, 0, None, 5, -1)
    assert decode_value(encode_value(empty, version)) == empty


def test_a_tombstone_and_unknown_tags():
    assert decode_value(None) is None
    value = TxnLogValue(**{**_fields(VALUE), "unknown_tags": {9: b"\x01\x02"}})
    assert decode_value(encode_value(value)).unknown_tags == {9: b"\x01\x02"}


@pytest.mark.parametrize(
    "data",
    [
        struct.pack(">h", 2) + bytes(40),  # an unknown version
        encode_value(VALUE, 0)[:20],  # cut inside the partitions
        struct.pack(">hqhib", 0, 1, 0, 1, 1)
        + struct.pack(">i", 1)
        + struct.pack(">h", 1)
        + b"t"
        + struct.pack(">i", 2**30),
    ],
)
def test_malformed_values_are_refused(data):
    with pytest.raises(DecodeError):
        decode_value(data)


def test_values_that_do_not_fit_are_refused():
    with pytest.raises(EncodeError):
        encode_value(TxnLogValue(**{**_fields(VALUE), "producer_epoch": 40000}))
    with pytest.raises(EncodeError):
        encode_value(VALUE, 2)
