"""A zero-copy view over one record batch (magic 2), and the splitting of a
records blob (the `records` field of Produce and Fetch) into such views.

Layout of a batch (Kafka's docs, "Record Batch"; DefaultRecordBatch.java):

    byte  size  field
      0     8   base_offset
      8     4   batch_length          bytes that follow this field
     12     4   partition_leader_epoch
     16     1   magic                 2
     17     4   crc                   CRC-32C of bytes 21 to the end
     21     2   attributes            codec 0-2, timestamp type 3,
                                      transactional 4, control 5,
                                      delete horizon 6
     23     4   last_offset_delta
     27     8   base_timestamp
     35     8   max_timestamp
     43     8   producer_id
     51     2   producer_epoch
     53     4   base_sequence
     57     4   record_count
     61         records, compressed as one block when the codec is not 0

The base offset and the leader epoch lie before the CRC'd range, so the
broker stamps them without recomputing the CRC; the attributes and the max
timestamp lie inside it.

The produce path works per batch: split, validate, patch. Only records()
looks at individual records, for the compactor, control records and tests.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator

import crc32c

from .compression import Compression, codec_of, decompress
from .errors import CompressionError, CorruptRecordError, DecodeError, EncodeError
from .primitives import INT16, INT32, INT64, UINT32, read_varint, read_varlong

MAX_CODEC = max(Compression)

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
LOG_OVERHEAD = 12  # base_offset + batch_length, the part batch_length leaves out
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD  # 49
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21
MAX_TIMESTAMP_OFFSET = 35
PARTITION_LEADER_EPOCH_OFFSET = 12

CODEC_MASK = 0x07
TIMESTAMP_TYPE_BIT = 0x08
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20
DELETE_HORIZON_BIT = 0x40

CREATE_TIME = 0
LOG_APPEND_TIME = 1

_INT32_MAX = 0x7FFFFFFF


class UnsupportedMagicError(CorruptRecordError):
    """A batch in the legacy message format (magic 0 or 1), or an unknown one."""

    def __init__(self, magic: int):
        super().__init__(
            f"record batch has magic {magic}; only magic 2 is supported "
            "(magic 0 and 1 are the pre-0.11 message formats)"
        )
        self.magic = magic


@dataclass(frozen=True, slots=True)
class Record:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    attributes: int = 0


def _header_field(index: int, doc: str) -> property:
    return property(lambda self: self._header[index], doc=doc)


class RecordBatch:
    """One batch, read in place. Writable when built over a bytearray."""

    __slots__ = ("view", "_header")

    def __init__(self, buf):
        view = _byte_view(buf)
        if len(view) <= MAGIC_OFFSET:
            raise CorruptRecordError(f"record batch of {len(view)} bytes has no magic byte")
        magic = view[MAGIC_OFFSET]
        if magic != 2:
            raise UnsupportedMagicError(magic - 256 if magic > 127 else magic)
        if len(view) < HEADER_SIZE:
            raise CorruptRecordError(
                f"record batch of {len(view)} bytes is shorter than its {HEADER_SIZE}-byte header"
            )
        self.view = view
        # The header is read once; the patchers below re-read it after writing.
        self._header = HEADER.unpack_from(view)

    base_offset = _header_field(0, "Offset of the first record.")
    batch_length = _header_field(1, "Bytes after the batch_length field.")
    partition_leader_epoch = _header_field(2, "Leader epoch stamped by the broker.")
    magic = _header_field(3, "Always 2.")
    crc = _header_field(4, "Stored CRC-32C (unsigned).")
    attributes = _header_field(5, "Raw attribute bits.")
    last_offset_delta = _header_field(6, "last offset minus base offset.")
    base_timestamp = _header_field(7, "Timestamp the record deltas are relative to.")
    max_timestamp = _header_field(8, "Greatest record timestamp, or the log append time.")
    producer_id = _header_field(9, "-1 when not idempotent.")
    producer_epoch = _header_field(10, "-1 when not idempotent.")
    base_sequence = _header_field(11, "-1 when not idempotent.")
    record_count = _header_field(12, "Number of records, as declared.")

    @property
    def compression(self) -> Compression:
        codec = self._header[5] & CODEC_MASK
        try:
            return codec_of(codec)
        except CompressionError as e:
            raise CorruptRecordError(str(e)) from None

    @property
    def timestamp_type(self) -> int:
        return LOG_APPEND_TIME if self._header[5] & TIMESTAMP_TYPE_BIT else CREATE_TIME

    @property
    def is_transactional(self) -> bool:
        return bool(self._header[5] & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self._header[5] & CONTROL_BIT)

    @property
    def has_delete_horizon(self) -> bool:
        return bool(self._header[5] & DELETE_HORIZON_BIT)

    @property
    def last_offset(self) -> int:
        return self._header[0] + self._header[6]

    @property
    def next_offset(self) -> int:
        return self._header[0] + self._header[6] + 1

    @property
    def last_sequence(self) -> int:
        base = self._header[11]
        if base == -1:
            return -1
        # Sequences are int32 and wrap to 0 after the maximum, as Kafka's
        # DefaultRecordBatch.incrementSequence does.
        delta = self._header[6]
        if base > _INT32_MAX - delta:
            return delta - (_INT32_MAX - base) - 1
        return base + delta

    @property
    def size_in_bytes(self) -> int:
        return len(self.view)

    def __repr__(self) -> str:
        return (
            f"RecordBatch(base_offset={self.base_offset}, records={self.record_count}, "
            f"bytes={len(self.view)}, codec={self._header[5] & CODEC_MASK})"
        )

    # -- checks --------------------------------------------------------------

    def compute_crc(self) -> int:
        return crc32c.crc32c(self.view[ATTRIBUTES_OFFSET:])

    def validate(self) -> None:
        """Header consistency and the CRC; never looks at single records."""
        length = self.batch_length
        if length < MIN_BATCH_LENGTH:
            raise CorruptRecordError(
                f"batch length {length} is below the minimum of {MIN_BATCH_LENGTH}"
            )
        if length + LOG_OVERHEAD != len(self.view):
            raise CorruptRecordError(
                f"batch length {length} does not match the {len(self.view) - LOG_OVERHEAD} "
                "bytes that follow it"
            )
        if self.record_count < 0:
            raise CorruptRecordError(f"negative record count {self.record_count}")
        if self._header[5] & CODEC_MASK > MAX_CODEC:
            raise CorruptRecordError(f"unknown compression codec {self._header[5] & CODEC_MASK}")
        computed = self.compute_crc()
        if computed != self.crc:
            raise CorruptRecordError(
                f"record batch CRC mismatch: stored {self.crc:#010x}, computed {computed:#010x}"
            )

    # -- in-place patching ---------------------------------------------------

    def set_base_offset(self, offset: int) -> None:
        self._patch(INT64, 0, offset)
        self._header = HEADER.unpack_from(self.view)

    def set_partition_leader_epoch(self, epoch: int) -> None:
        self._patch(INT32, PARTITION_LEADER_EPOCH_OFFSET, epoch)
        self._header = HEADER.unpack_from(self.view)

    def set_max_timestamp(self, timestamp: int, timestamp_type: int | None = None) -> None:
        """Set the max timestamp, and the timestamp type if given; both lie
        inside the CRC'd range, so the CRC is recomputed (once)."""
        attributes = self._header[5]
        if timestamp_type is not None:
            attributes &= ~TIMESTAMP_TYPE_BIT
            if timestamp_type == LOG_APPEND_TIME:
                attributes |= TIMESTAMP_TYPE_BIT
        if attributes == self._header[5] and timestamp == self._header[8]:
            return
        self._patch(INT16, ATTRIBUTES_OFFSET, attributes)
        self._patch(INT64, MAX_TIMESTAMP_OFFSET, timestamp)
        self._patch(UINT32, CRC_OFFSET, self.compute_crc())
        self._header = HEADER.unpack_from(self.view)

    def set_log_append_time(self, timestamp: int) -> None:
        """What the broker does for a LogAppendTime topic: every record then
        reads the batch's max timestamp as its timestamp."""
        self.set_max_timestamp(timestamp, LOG_APPEND_TIME)

    def _patch(self, fmt: struct.Struct, pos: int, value: int) -> None:
        if self.view.readonly:
            raise TypeError("this record batch views read-only bytes; wrap a bytearray to patch it")
        try:
            fmt.pack_into(self.view, pos, value)
        except struct.error as e:
            raise EncodeError(f"cannot write {value} into the batch header: {e}") from None

    # -- records -------------------------------------------------------------

    def records(self, max_size: int | None = None) -> Iterator[Record]:
        """The records, decompressed once if needed. max_size bounds the
        decompressed size (a guard against decompression bombs)."""
        count = self.record_count
        if count < 0:
            raise CorruptRecordError(f"negative record count {count}")
        if count == 0:
            return iter(())
        body = self.view[HEADER_SIZE:]
        codec = self.compression
        if codec is not Compression.NONE:
            body = memoryview(decompress(codec, body, max_size))
        return _read_records(body, count, self._header)


def _read_records(body: memoryview, count: int, header: tuple) -> Iterator[Record]:
    base_offset = header[0]
    base_timestamp = header[7]
    # With LogAppendTime every record's timestamp is the one the broker set.
    log_append_time = header[8] if header[5] & TIMESTAMP_TYPE_BIT else None
    end = len(body)
    pos = 0
    for index in range(count):
        try:
            size, pos = read_varint(body, pos)
            if size < 0 or size > end - pos:
                raise CorruptRecordError(f"declares {size} bytes but {end - pos} remain")
            stop = pos + size
            # Reads through this slice cannot run into the next record.
            rec = body[:stop]
            attributes = rec[pos]
            delta, p = read_varlong(rec, pos + 1)
            offset_delta, p = read_varint(rec, p)
            key, p = _read_bytes(rec, p)
            value, p = _read_bytes(rec, p)
            header_count, p = read_varint(rec, p)
            if header_count < 0 or header_count > stop - p:
                raise CorruptRecordError(f"header count {header_count} with {stop - p} bytes left")
            headers = []
            for _ in range(header_count):
                key_size, p = read_varint(rec, p)
                if key_size < 0 or key_size > stop - p:
                    raise CorruptRecordError(f"header key of {key_size} bytes with {stop - p} left")
                # Kafka takes any bytes as a header key; those that are not
                # UTF-8 come back as surrogates and are written back as
                # the same bytes (records.build_batch).
                header_key = str(rec[p : p + key_size], "utf-8", "surrogateescape")
                header_value, p = _read_bytes(rec, p + key_size)
                headers.append((header_key, header_value))
            if p != stop:
                raise CorruptRecordError(f"declares {size} bytes but its fields end {stop - p} bytes early")
        except (CorruptRecordError, DecodeError, IndexError) as e:
            raise CorruptRecordError(f"record {index} of batch at offset {base_offset}: {e}") from None
        pos = stop
        yield Record(
            offset=base_offset + offset_delta,
            timestamp=base_timestamp + delta if log_append_time is None else log_append_time,
            key=key,
            value=value,
            headers=headers,
            attributes=attributes,
        )
    if pos != end:
        raise CorruptRecordError(
            f"{end - pos} bytes follow the last of {count} records in batch at offset {base_offset}"
        )


def _read_bytes(rec: memoryview, pos: int) -> tuple[bytes | None, int]:
    size, pos = read_varint(rec, pos)
    if size == -1:
        return None, pos
    if size < -1 or size > len(rec) - pos:
        raise CorruptRecordError(f"field of {size} bytes with {len(rec) - pos} left")
    return bytes(rec[pos : pos + size]), pos + size


# -- splitting a records blob -------------------------------------------------


def iter_batches(buf) -> Iterator[RecordBatch]:
    """The batches of a records blob, as views into it. Any bytes that do
    not form a whole batch are an error (a Produce request's records)."""
    view = _byte_view(buf)
    pos, end = 0, len(view)
    while pos < end:
        length = _declared_length(view, pos)
        if length is None:
            raise CorruptRecordError(f"truncated record batch: {end - pos} bytes at byte {pos}")
        if length > end - pos - LOG_OVERHEAD:
            raise CorruptRecordError(
                f"truncated record batch at byte {pos}: it declares {length} bytes "
                f"after its length field but {end - pos - LOG_OVERHEAD} remain"
            )
        stop = pos + LOG_OVERHEAD + length
        yield RecordBatch(view[pos:stop])
        pos = stop


def split_batches(buf) -> tuple[list[RecordBatch], int]:
    """The whole batches of a records blob, and how many bytes trail them.

    A Fetch response may end inside a batch (the broker cut it at max_bytes);
    clients skip such a partial batch, and so does this. Lengths that could
    never be valid are still an error.
    """
    view = _byte_view(buf)
    batches = []
    pos, end = 0, len(view)
    while pos < end:
        length = _declared_length(view, pos)
        if length is None or length > end - pos - LOG_OVERHEAD:
            break
        stop = pos + LOG_OVERHEAD + length
        batches.append(RecordBatch(view[pos:stop]))
        pos = stop
    return batches, end - pos


def _declared_length(view: memoryview, pos: int) -> int | None:
    """batch_length of the batch at pos, or None if even that is cut off."""
    if len(view) - pos < LOG_OVERHEAD:
        return None
    (length,) = INT32.unpack_from(view, pos + 8)
    if length < MIN_BATCH_LENGTH:
        # The legacy formats have shorter messages; name the real problem.
        if len(view) - pos > MAGIC_OFFSET and view[pos + MAGIC_OFFSET] != 2:
            magic = view[pos + MAGIC_OFFSET]
            raise UnsupportedMagicError(magic - 256 if magic > 127 else magic)
        raise CorruptRecordError(
            f"record batch at byte {pos} declares length {length}, "
            f"below the minimum of {MIN_BATCH_LENGTH}"
        )
    return length


def _byte_view(buf) -> memoryview:
    view = memoryview(buf)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view
