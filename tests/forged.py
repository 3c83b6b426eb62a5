"""Hand-made record batches for the tests of the produce checks: records
field by field (any field may lie), wrapped in a batch header with a true
CRC, compressed as a whole if asked. Only the codec's long-standing
building blocks are used, so the same batches can be sent to any broker."""

from __future__ import annotations

import struct

import crc32c

from pybroker.protocol.compression import Compression, compress
from pybroker.protocol.primitives import write_varint, write_varlong
from pybroker.protocol.record_batch import CRC_OFFSET, HEADER


def varint(value: int) -> bytes:
    out = bytearray()
    write_varint(out, value)
    return bytes(out)


def fields(ts=0, offset=0, key: bytes | None = b"k", value: bytes | None = b"v", headers=(), raw_key_len=None) -> bytes:
    """A record's bytes after its length; raw_key_len replaces the key length."""
    out = bytearray(b"\x00")
    write_varlong(out, ts)
    write_varint(out, offset)
    if raw_key_len is not None:
        out += raw_key_len
    else:
        write_varint(out, -1 if key is None else len(key))
    out += key or b""
    write_varint(out, -1 if value is None else len(value))
    out += value or b""
    write_varint(out, len(headers))
    for k, v in headers:
        write_varint(out, len(k))
        out += k
        write_varint(out, -1 if v is None else len(v))
        out += v or b""
    return bytes(out)


def record(body: bytes, length: int | None = None) -> bytes:
    return varint(len(body) if length is None else length) + body


def records_of(*bodies: bytes) -> bytes:
    return b"".join(record(b) for b in bodies)


def with_crc(raw: bytearray) -> bytes:
    struct.pack_into(">i", raw, 8, len(raw) - 12)
    struct.pack_into(">I", raw, CRC_OFFSET, crc32c.crc32c(bytes(raw[21:])))
    return bytes(raw)


def forge(records: bytes, count: int, codec=Compression.NONE, *, last_delta=None, base_offset=0, attributes=0,
          base_ts=0, max_ts=None, producer_id=-1, sequence=-1, magic=2, raw_body=False) -> bytes:
    """A batch around record bytes; ``raw_body`` takes them as the body as
    is (already compressed, or not compressed at all) under codec's bits."""
    body = records if raw_body or not codec else compress(codec, records)
    raw = bytearray(HEADER.size) + body
    HEADER.pack_into(
        raw, 0, base_offset, 0, -1, magic, 0, attributes | codec,
        count - 1 if last_delta is None else last_delta, base_ts, base_ts if max_ts is None else max_ts,
        producer_id, -1, sequence, count,
    )
    return with_crc(raw)
