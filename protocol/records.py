"""Record batches (magic 2): the public entry point.

Reading lives in record_batch.py (RecordBatch, iter_batches, split_batches)
and is re-exported here; this module builds batches, including the control
batches that end a transaction, and reads control records back.

Record layout inside a batch (Kafka's docs, "Record"; DefaultRecord.java):

    length          varint   bytes that follow
    attributes      int8     unused, 0
    timestampDelta  varlong  from the batch's base_timestamp
    offsetDelta     varint   from the batch's base_offset
    keyLength       varint   -1 for a null key
    key             bytes
    valueLength     varint   -1 for a null value
    value           bytes
    headerCount     varint
    headers         [keyLength varint, key utf-8, valueLength varint, value]
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Iterable, NamedTuple, Sequence

import crc32c

from .compression import Compression, codec_of, compress
from .errors import CompressionError, CorruptRecordError, EncodeError
from .primitives import UINT32, write_varint, write_varlong
from .record_batch import (
    CONTROL_BIT,
    CREATE_TIME,
    CRC_OFFSET,
    DELETE_HORIZON_BIT,
    HEADER,
    HEADER_SIZE,
    LOG_APPEND_TIME,
    LOG_OVERHEAD,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
    Record,
    RecordBatch,
    UnsupportedMagicError,
    iter_batches,
    split_batches,
)

__all__ = [
    "CREATE_TIME",
    "LOG_APPEND_TIME",
    "Compression",
    "ControlType",
    "EndTxnMarker",
    "NewRecord",
    "Record",
    "RecordBatch",
    "UnsupportedMagicError",
    "build_batch",
    "build_control_batch",
    "control_type",
    "iter_batches",
    "read_end_txn_marker",
    "split_batches",
]

NO_TIMESTAMP = -1


class NewRecord(NamedTuple):
    """A record to write. A plain tuple in this field order works too.

    timestamp None takes the batch's base timestamp; offset_delta None takes
    the record's position in the batch.
    """

    key: bytes | None = None
    value: bytes | None = None
    headers: Sequence[tuple[str | bytes, bytes | None]] = ()
    timestamp: int | None = None
    offset_delta: int | None = None


def build_batch(
    records: Iterable[NewRecord | tuple],
    *,
    base_offset: int = 0,
    compression: int = Compression.NONE,
    timestamp_type: int = CREATE_TIME,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    is_transactional: bool = False,
    is_control: bool = False,
    has_delete_horizon: bool = False,
    partition_leader_epoch: int = -1,
    base_timestamp: int | None = None,
    max_timestamp: int | None = None,
    last_offset_delta: int | None = None,
) -> bytes:
    """Encode one batch.

    base_timestamp defaults to the first record's timestamp, max_timestamp
    to the greatest record timestamp (pass the append time for
    LogAppendTime), last_offset_delta to the last record's offset delta; the
    compactor passes the original one so an emptied batch keeps its
    producer's sequence range. With has_delete_horizon, base_timestamp is
    the delete horizon, as in Kafka.
    """
    records = [r if isinstance(r, NewRecord) else NewRecord(*r) for r in records]
    codec = codec_of(compression)
    if base_timestamp is None:
        first = records[0].timestamp if records else None
        base_timestamp = NO_TIMESTAMP if first is None else first
    try:
        body, deltas, timestamps = _encode_records(records, base_timestamp)
    except (OverflowError, TypeError, UnicodeEncodeError) as e:
        raise EncodeError(f"cannot encode record: {e}") from None
    if max_timestamp is None:
        max_timestamp = max(timestamps, default=NO_TIMESTAMP)
    if last_offset_delta is None:
        last_offset_delta = deltas[-1] if deltas else 0
    if codec is not Compression.NONE:
        try:
            body = compress(codec, body)
        except CompressionError as e:
            raise EncodeError(str(e)) from None

    attributes = codec | (timestamp_type << 3 & TIMESTAMP_TYPE_BIT)
    if is_transactional:
        attributes |= TRANSACTIONAL_BIT
    if is_control:
        attributes |= CONTROL_BIT
    if has_delete_horizon:
        attributes |= DELETE_HORIZON_BIT

    out = bytearray(HEADER_SIZE)
    out += body
    try:
        HEADER.pack_into(
            out, 0, base_offset, len(out) - LOG_OVERHEAD, partition_leader_epoch, 2, 0,
            attributes, last_offset_delta, base_timestamp, max_timestamp, producer_id,
            producer_epoch, base_sequence, len(records),
        )
    except struct.error as e:
        raise EncodeError(f"batch header field out of range: {e}") from None
    UINT32.pack_into(out, CRC_OFFSET, crc32c.crc32c(memoryview(out)[CRC_OFFSET + 4 :]))
    return bytes(out)


def _encode_records(records: list[NewRecord], base_timestamp: int):
    body = bytearray()
    deltas = []
    timestamps = []
    previous = -1
    for index, record in enumerate(records):
        delta = index if record.offset_delta is None else record.offset_delta
        if delta <= previous:
            raise EncodeError(f"offset delta {delta} does not increase on {previous}")
        previous = delta
        timestamp = base_timestamp if record.timestamp is None else record.timestamp
        deltas.append(delta)
        timestamps.append(timestamp)

        one = bytearray(b"\x00")  # attributes
        write_varlong(one, timestamp - base_timestamp)
        write_varint(one, delta)
        _write_bytes(one, record.key)
        _write_bytes(one, record.value)
        write_varint(one, len(record.headers))
        for key, value in record.headers:
            if key is None:
                raise EncodeError("a header key cannot be null")
            _write_bytes(one, key.encode("utf-8", "surrogateescape") if isinstance(key, str) else key)
            _write_bytes(one, value)
        write_varint(body, len(one))
        body += one
    return body, deltas, timestamps


def _write_bytes(out: bytearray, data) -> None:
    if data is None:
        write_varint(out, -1)
        return
    data = memoryview(data)
    write_varint(out, data.nbytes)
    out += data


# -- control records ------------------------------------------------------------


class ControlType(IntEnum):
    """Type in a control record's key (ControlRecordType.java). Types 2-6 are
    KRaft's and never appear in a partition log this broker writes."""

    ABORT = 0
    COMMIT = 1
    LEADER_CHANGE = 2
    SNAPSHOT_HEADER = 3
    SNAPSHOT_FOOTER = 4
    KRAFT_VERSION = 5
    KRAFT_VOTERS = 6


@dataclass(frozen=True, slots=True)
class EndTxnMarker:
    commit: bool
    coordinator_epoch: int


# Key: version int16, type int16. End-transaction value: version int16,
# coordinator epoch int32. Version 0 of both; newer versions may only append
# fields, so readers take the prefix they know.
_CONTROL_KEY = struct.Struct(">hh")
_END_TXN_VALUE = struct.Struct(">hi")


def build_control_batch(
    producer_id: int,
    producer_epoch: int,
    commit: bool,
    coordinator_epoch: int,
    timestamp: int,
    base_offset: int = 0,
    partition_leader_epoch: int = -1,
) -> bytes:
    """The batch a transaction coordinator's marker writes: one control
    record, transactional and control bits set, no sequence, uncompressed."""
    key = _CONTROL_KEY.pack(0, ControlType.COMMIT if commit else ControlType.ABORT)
    value = _END_TXN_VALUE.pack(0, coordinator_epoch)
    return build_batch(
        [NewRecord(key, value, (), timestamp)],
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        is_transactional=True,
        is_control=True,
        partition_leader_epoch=partition_leader_epoch,
    )


def control_type(record: Record) -> int:
    """The type of a control record (a ControlType value, or an unknown int)."""
    key = record.key
    if key is None or len(key) < _CONTROL_KEY.size:
        raise CorruptRecordError(f"control record key of {0 if key is None else len(key)} bytes, need 4")
    version, kind = _CONTROL_KEY.unpack_from(key)
    if version < 0:
        raise CorruptRecordError(f"control record key version {version}")
    return kind


def read_end_txn_marker(record: Record) -> EndTxnMarker:
    kind = control_type(record)
    if kind not in (ControlType.ABORT, ControlType.COMMIT):
        raise CorruptRecordError(f"control record type {kind} is not a transaction marker")
    value = record.value
    if value is None or len(value) < _END_TXN_VALUE.size:
        raise CorruptRecordError(
            f"transaction marker value of {0 if value is None else len(value)} bytes, need 6"
        )
    version, coordinator_epoch = _END_TXN_VALUE.unpack_from(value)
    if version < 0:
        raise CorruptRecordError(f"transaction marker value version {version}")
    return EndTxnMarker(kind == ControlType.COMMIT, coordinator_epoch)
