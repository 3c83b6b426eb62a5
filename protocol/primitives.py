"""Readers and writers for the wire primitives of the Kafka protocol.

Readers take a buffer (bytes or memoryview) and a position and return
``(value, new_position)``; they never copy more than the value itself and
check every declared length against the bytes actually left, so an absurd
length fails before anything is allocated. Writers append to a ``Writer``.
The generated message modules inline the fixed-width cases with
``struct`` and call these for everything of variable length.
"""

from __future__ import annotations

import struct
import uuid

from .errors import DecodeError

INT8 = struct.Struct(">b")
INT16 = struct.Struct(">h")
INT32 = struct.Struct(">i")
INT64 = struct.Struct(">q")
UINT16 = struct.Struct(">H")
UINT32 = struct.Struct(">I")
FLOAT64 = struct.Struct(">d")

ZERO_UUID = uuid.UUID(int=0)

# Large blobs (record batches, SASL tokens) are kept as separate chunks in a
# Writer instead of being copied into its bytearray.
CHUNK_THRESHOLD = 4096


# -- varints ---------------------------------------------------------------


def read_uvarint(buf, pos: int) -> tuple[int, int]:
    """Unsigned varint of at most 5 bytes (an unsigned 32-bit value)."""
    try:
        b = buf[pos]
        if b < 0x80:
            return b, pos + 1
        value = b & 0x7F
        shift = 7
        pos += 1
        while True:
            b = buf[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value, pos
            shift += 7
            if shift > 28:
                raise DecodeError("unsigned varint longer than 5 bytes")
    except IndexError:
        raise DecodeError("truncated varint") from None


def read_uvarlong(buf, pos: int) -> tuple[int, int]:
    """Unsigned varint of at most 10 bytes (an unsigned 64-bit value)."""
    value = 0
    shift = 0
    try:
        while True:
            b = buf[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value, pos
            shift += 7
            if shift > 63:
                raise DecodeError("varlong longer than 10 bytes")
    except IndexError:
        raise DecodeError("truncated varlong") from None


def read_varint(buf, pos: int) -> tuple[int, int]:
    """Zig-zag signed varint (int32)."""
    v, pos = read_uvarint(buf, pos)
    return (v >> 1) ^ -(v & 1), pos


def read_varlong(buf, pos: int) -> tuple[int, int]:
    """Zig-zag signed varlong (int64)."""
    v, pos = read_uvarlong(buf, pos)
    return (v >> 1) ^ -(v & 1), pos


def encode_uvarint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def write_uvarint(out: bytearray, value: int) -> None:
    if value < 0:
        raise OverflowError(f"unsigned varint cannot hold {value}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def write_varint(out: bytearray, value: int) -> None:
    if not -0x80000000 <= value <= 0x7FFFFFFF:
        raise OverflowError(f"varint cannot hold {value}")
    write_uvarint(out, ((value << 1) ^ (value >> 31)) & 0xFFFFFFFF)


def write_varlong(out: bytearray, value: int) -> None:
    if not -0x8000000000000000 <= value <= 0x7FFFFFFFFFFFFFFF:
        raise OverflowError(f"varlong cannot hold {value}")
    write_uvarint(out, ((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF)


def uvarint_size(value: int) -> int:
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def varint_size(value: int) -> int:
    return uvarint_size(((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF)


# -- variable-length readers -------------------------------------------------
# Naming: n = nullable, c = compact (KIP-482 unsigned-varint length + 1).


def _need(buf, pos: int, n: int, what: str) -> None:
    if n > len(buf) - pos:
        raise DecodeError(f"{what} of {n} bytes but only {len(buf) - pos} remain")


def read_string(buf, pos: int) -> tuple[str, int]:
    (n,) = INT16.unpack_from(buf, pos)
    pos += 2
    if n < 0:
        raise DecodeError("non-nullable string field was serialized as null")
    _need(buf, pos, n, "string")
    return str(buf[pos : pos + n], "utf-8"), pos + n


def read_nullable_string(buf, pos: int) -> tuple[str | None, int]:
    (n,) = INT16.unpack_from(buf, pos)
    pos += 2
    if n < 0:
        return None, pos
    _need(buf, pos, n, "string")
    return str(buf[pos : pos + n], "utf-8"), pos + n


def read_compact_string(buf, pos: int) -> tuple[str, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise DecodeError("non-nullable string field was serialized as null")
    n -= 1
    _need(buf, pos, n, "string")
    return str(buf[pos : pos + n], "utf-8"), pos + n


def read_compact_nullable_string(buf, pos: int) -> tuple[str | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    n -= 1
    _need(buf, pos, n, "string")
    return str(buf[pos : pos + n], "utf-8"), pos + n


def read_bytes(buf, pos: int) -> tuple[bytes, int]:
    (n,) = INT32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        raise DecodeError("non-nullable bytes field was serialized as null")
    _need(buf, pos, n, "bytes")
    return bytes(buf[pos : pos + n]), pos + n


def read_nullable_bytes(buf, pos: int) -> tuple[bytes | None, int]:
    (n,) = INT32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        return None, pos
    _need(buf, pos, n, "bytes")
    return bytes(buf[pos : pos + n]), pos + n


def read_compact_bytes(buf, pos: int) -> tuple[bytes, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise DecodeError("non-nullable bytes field was serialized as null")
    n -= 1
    _need(buf, pos, n, "bytes")
    return bytes(buf[pos : pos + n]), pos + n


def read_compact_nullable_bytes(buf, pos: int) -> tuple[bytes | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    n -= 1
    _need(buf, pos, n, "bytes")
    return bytes(buf[pos : pos + n]), pos + n


# Record data and zero-copy fields come back as views of the input buffer:
# a produced batch travels from the socket buffer to the log without a copy.


def read_view(buf, pos: int) -> tuple[memoryview, int]:
    (n,) = INT32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        raise DecodeError("non-nullable bytes field was serialized as null")
    _need(buf, pos, n, "bytes")
    return buf[pos : pos + n], pos + n


def read_nullable_view(buf, pos: int) -> tuple[memoryview | None, int]:
    (n,) = INT32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        return None, pos
    _need(buf, pos, n, "bytes")
    return buf[pos : pos + n], pos + n


def read_compact_view(buf, pos: int) -> tuple[memoryview, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise DecodeError("non-nullable bytes field was serialized as null")
    n -= 1
    _need(buf, pos, n, "bytes")
    return buf[pos : pos + n], pos + n


def read_compact_nullable_view(buf, pos: int) -> tuple[memoryview | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    n -= 1
    _need(buf, pos, n, "bytes")
    return buf[pos : pos + n], pos + n


def read_uuid(buf, pos: int) -> tuple[uuid.UUID, int]:
    _need(buf, pos, 16, "uuid")
    return uuid.UUID(bytes=bytes(buf[pos : pos + 16])), pos + 16


def read_array_length(buf, pos: int) -> tuple[int, int]:
    """int32 element count; -1 is null. Every element takes at least one byte,
    so a count above the bytes left is rejected before any list grows."""
    (n,) = INT32.unpack_from(buf, pos)
    pos += 4
    if n > len(buf) - pos:
        raise DecodeError(f"array of {n} elements but only {len(buf) - pos} bytes remain")
    return n, pos


def read_compact_array_length(buf, pos: int) -> tuple[int, int]:
    n, pos = read_uvarint(buf, pos)
    n -= 1
    if n > len(buf) - pos:
        raise DecodeError(f"array of {n} elements but only {len(buf) - pos} bytes remain")
    return n, pos


def read_int_array(buf, pos: int, n: int, code: str, width: int) -> tuple[list, int]:
    _need(buf, pos, n * width, "array")
    return list(struct.unpack_from(f">{n}{code}", buf, pos)), pos + n * width


def read_tagged_fields(buf, pos: int) -> tuple[dict[int, bytes] | None, int]:
    """The tagged-field section: tag -> raw value bytes, or None when empty."""
    count, pos = read_uvarint(buf, pos)
    if count == 0:
        return None, pos
    if count > len(buf) - pos:
        raise DecodeError(f"{count} tagged fields but only {len(buf) - pos} bytes remain")
    fields: dict[int, bytes] = {}
    last = -1
    for _ in range(count):
        tag, pos = read_uvarint(buf, pos)
        if tag <= last:
            raise DecodeError(f"tagged field {tag} out of order")
        last = tag
        size, pos = read_uvarint(buf, pos)
        _need(buf, pos, size, "tagged field")
        fields[tag] = bytes(buf[pos : pos + size])
        pos += size
    return fields, pos


# -- writer ------------------------------------------------------------------


class Writer:
    """Collects an encoded message as a bytearray plus large blobs kept by
    reference, so a 1 MiB record batch is never copied on its way out.

    ``chunks()`` gives the buffers in order, ready for a vectored send;
    ``getvalue()`` joins them (one copy) for tests and small messages.
    """

    __slots__ = ("buf", "_chunks")

    def __init__(self) -> None:
        self.buf = bytearray()
        self._chunks: list = []

    def blob(self, data) -> None:
        """Append raw bytes; large ones (or non-buffer file regions) by reference."""
        if isinstance(data, (bytes, bytearray, memoryview)) and len(data) < CHUNK_THRESHOLD:
            self.buf += data
            return
        if self.buf:
            self._chunks.append(bytes(self.buf))
            self.buf.clear()
        self._chunks.append(data)

    def chunks(self) -> list:
        if self.buf:
            return [*self._chunks, bytes(self.buf)]
        return list(self._chunks)

    def size(self) -> int:
        return len(self.buf) + sum(len(c) for c in self._chunks)

    def getvalue(self) -> bytes:
        if not self._chunks:
            return bytes(self.buf)
        return b"".join([*self._chunks, self.buf])


def write_string(w: Writer, s: str) -> None:
    data = s.encode("utf-8")
    w.buf += INT16.pack(len(data))
    w.buf += data


def write_nullable_string(w: Writer, s: str | None) -> None:
    if s is None:
        w.buf += b"\xff\xff"
    else:
        write_string(w, s)


def write_compact_string(w: Writer, s: str) -> None:
    data = s.encode("utf-8")
    write_uvarint(w.buf, len(data) + 1)
    w.buf += data


def write_compact_nullable_string(w: Writer, s: str | None) -> None:
    if s is None:
        w.buf.append(0)
    else:
        write_compact_string(w, s)


def write_bytes(w: Writer, data) -> None:
    w.buf += INT32.pack(len(data))
    w.blob(data)


def write_nullable_bytes(w: Writer, data) -> None:
    if data is None:
        w.buf += b"\xff\xff\xff\xff"
    else:
        write_bytes(w, data)


def write_compact_bytes(w: Writer, data) -> None:
    write_uvarint(w.buf, len(data) + 1)
    w.blob(data)


def write_compact_nullable_bytes(w: Writer, data) -> None:
    if data is None:
        w.buf.append(0)
    else:
        write_compact_bytes(w, data)


def write_array_length(w: Writer, items) -> None:
    w.buf += INT32.pack(-1 if items is None else len(items))


def write_compact_array_length(w: Writer, items) -> None:
    write_uvarint(w.buf, 0 if items is None else len(items) + 1)


def write_tagged_fields(w: Writer, fields: list[tuple[int, bytes]]) -> None:
    """Write a tagged-field section from (tag, encoded value) pairs."""
    fields.sort(key=lambda f: f[0])
    write_uvarint(w.buf, len(fields))
    for tag, data in fields:
        write_uvarint(w.buf, tag)
        write_uvarint(w.buf, len(data))
        w.buf += data
