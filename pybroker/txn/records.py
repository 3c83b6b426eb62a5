"""The records of ``__transaction_state``, in Kafka's formats.

    TransactionLogKey    version int16 (0), transactional id string
    TransactionLogValue  version int16, then
        producer id int64, producer epoch int16, transaction timeout int32,
        status int8 (a TxnState), partitions [topic string, [partition
        int32]] or null, last update timestamp int64, start timestamp int64
      v1 is flexible (compact forms, a tagged section after the partition
      entries and after the value) with tags 0 previous producer id int64,
      1 next producer id int64, 2 client transaction version int16
      (KIP-890); absent tags take their defaults (-1, -1, 0).

A null value is a tombstone: the transactional id expired. Both versions
are read. v0 is written unless a value carries a tag, which only v1 can
hold (v0 is readable by every Kafka version, v1 from 3.5 on). Tags this
broker does not know are kept.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pybroker.protocol import primitives as p
from pybroker.protocol.errors import DecodeError, EncodeError, decoding
from pybroker.protocol.primitives import INT8, INT16, INT32, INT64, Writer

KEY_VERSION = 0
VALUE_VERSIONS = (0, 1)
_PREVIOUS_PRODUCER_ID, _NEXT_PRODUCER_ID, _CLIENT_TXN_VERSION = 0, 1, 2


@dataclass(slots=True)
class TxnLogValue:
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: int
    partitions: dict[str, list[int]] | None
    last_update_ms: int
    start_ms: int
    previous_producer_id: int = -1
    next_producer_id: int = -1
    client_txn_version: int = 0
    unknown_tags: dict[int, bytes] | None = field(default=None)


def encode_key(transactional_id: str) -> bytes:
    w = Writer()
    w.buf += INT16.pack(KEY_VERSION)
    try:
        p.write_string(w, transactional_id)
    except (struct.error, UnicodeEncodeError) as e:
        raise EncodeError(f"cannot write transactional id: {e}") from None
    return w.getvalue()


def decode_key(data) -> str | None:
    """The transactional id, or None for a key version this broker does not know."""
    with decoding("TransactionLogKey"):
        (version,) = INT16.unpack_from(data, 0)
        if version < 0:
            raise DecodeError(f"negative key version {version}")
        if version != KEY_VERSION:
            return None
        return p.read_string(data, 2)[0]


def encode_value(value: TxnLogValue, version: int | None = None) -> bytes:
    if version is None:
        tagged = value.unknown_tags or value.previous_producer_id != -1 or value.next_producer_id != -1
        version = 1 if tagged or value.client_txn_version != 0 else 0
    if version not in VALUE_VERSIONS:
        raise EncodeError(f"TransactionLogValue has no version {version}")
    flexible = version >= 1
    w = Writer()
    try:
        w.buf += INT16.pack(version)
        w.buf += INT64.pack(value.producer_id) + INT16.pack(value.producer_epoch) + INT32.pack(value.timeout_ms)
        w.buf += INT8.pack(value.state)
        parts = value.partitions
        if parts is None:
            _length(w, -1, flexible)
        else:
            _length(w, len(parts), flexible)
            for topic, ids in parts.items():
                (p.write_compact_string if flexible else p.write_string)(w, topic)
                _length(w, len(ids), flexible)
                for i in ids:
                    w.buf += INT32.pack(i)
                if flexible:
                    w.buf.append(0)
        w.buf += INT64.pack(value.last_update_ms) + INT64.pack(value.start_ms)
    except (struct.error, UnicodeEncodeError) as e:
        raise EncodeError(f"cannot write TransactionLogValue: {e}") from None
    if flexible:
        tags = dict(value.unknown_tags or {})
        if value.previous_producer_id != -1:
            tags[_PREVIOUS_PRODUCER_ID] = INT64.pack(value.previous_producer_id)
        if value.next_producer_id != -1:
            tags[_NEXT_PRODUCER_ID] = INT64.pack(value.next_producer_id)
        if value.client_txn_version != 0:
            tags[_CLIENT_TXN_VERSION] = INT16.pack(value.client_txn_version)
        if tags:
            p.write_tagged_fields(w, sorted(tags.items()))
        else:
            w.buf.append(0)
    return w.getvalue()


def decode_value(data) -> TxnLogValue | None:
    """The value, None for a tombstone. Malformed bytes raise DecodeError."""
    if data is None:
        return None
    with decoding("TransactionLogValue"):
        (version,) = INT16.unpack_from(data, 0)
        if version not in VALUE_VERSIONS:
            raise DecodeError(f"unknown TransactionLogValue version {version}")
        flexible = version >= 1
        producer_id, epoch, timeout = struct.unpack_from(">qhi", data, 2)
        (state,) = INT8.unpack_from(data, 16)
        pos = 17
        count, pos = (p.read_compact_array_length if flexible else p.read_array_length)(data, pos)
        partitions: dict[str, list[int]] | None = None
        if count >= 0:
            partitions = {}
            for _ in range(count):
                topic, pos = (p.read_compact_string if flexible else p.read_string)(data, pos)
                n, pos = (p.read_compact_array_length if flexible else p.read_array_length)(data, pos)
                if n < 0:
                    raise DecodeError("partition ids serialized as null")
                ids, pos = p.read_int_array(data, pos, n, "i", 4)
                if flexible:
                    _, pos = p.read_tagged_fields(data, pos)
                partitions.setdefault(topic, []).extend(ids)
        last_update, start = struct.unpack_from(">qq", data, pos)
        pos += 16
        value = TxnLogValue(producer_id, epoch, timeout, state, partitions, last_update, start)
        if flexible:
            tags, pos = p.read_tagged_fields(data, pos)
            tags = dict(tags or {})
            if _PREVIOUS_PRODUCER_ID in tags:
                (value.previous_producer_id,) = INT64.unpack(tags.pop(_PREVIOUS_PRODUCER_ID))
            if _NEXT_PRODUCER_ID in tags:
                (value.next_producer_id,) = INT64.unpack(tags.pop(_NEXT_PRODUCER_ID))
            if _CLIENT_TXN_VERSION in tags:
                (value.client_txn_version,) = INT16.unpack(tags.pop(_CLIENT_TXN_VERSION))
            value.unknown_tags = tags or None
        return value


def _length(w: Writer, n: int, flexible: bool) -> None:
    """An array's length (-1: null), compact (n + 1, as a varint) when flexible."""
    if flexible:
        p.write_uvarint(w.buf, n + 1)
    else:
        w.buf += INT32.pack(n)
