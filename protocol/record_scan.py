"""The record scanner: walks the records of a batch body (magic 2) and
checks every one as Kafka's DefaultRecord reader and LogValidator do,
without building any object per record.

One call scans the whole records that lie in ``buf[pos:end]`` and stops at
the first of: the declared record count reached (DONE), a record not yet
whole in the buffer (NEED: a compressed body arrives in windows), or a
record that cannot be read (ERROR). It returns

    (status, pos, index, max_timestamp, a, b)

``pos`` and ``index`` are where the next scan starts (the first record not
scanned); on ERROR they name the bad record. On NEED, ``a`` is the number
of bytes the record needs from ``pos`` (its length prefix included), or 0
when even the length prefix is cut off. On ERROR, ``a`` is the kind of
problem (``ERR_*``) and ``b`` what the message needs (see ``describe``).

What a record must be (layout in records.py):

* every varint terminates within 5 bytes and holds 32 bits, every varlong
  within 10 bytes and 64 bits (Kafka's Java reader lets the excess bits of
  the last byte overflow silently; librdkafka reads them as 64-bit values,
  so such bytes mean different records to different clients);
* the length is not negative; every field lies inside the record and the
  fields end exactly where the length says;
* key and value lengths are -1 (null) or more, header key lengths 0 or
  more, header value lengths -1 or more, the header count 0 or more. Kafka
  reads any negative key or value length as null; librdkafka fails on
  anything below -1, so such a batch would be unreadable to it;
* the offset delta of the i-th record is i. Kafka rewrites a compressed
  batch whose deltas are not 0, 1, 2 ... and keeps an uncompressed one as
  sent; consumers number the records by these deltas, so a batch whose
  deltas disagree with its offset range loses or repeats records.

Per-record verdicts that do not stop the scan, collected as Kafka collects
them (one per record, the key first) into ``errors`` as (index, kind,
timestamp): NO_KEY when ``REQUIRE_KEY`` is set and the key is null
(compacted topics); BAD_TIMESTAMP when ``CHECK_TIMESTAMPS`` is set and
the record's timestamp (base timestamp + delta, wrapping at 64 bits as
Java's long does) is not -1 and lies outside [ts_lo, ts_hi]. The maximum
timestamp is taken over every record, starting from ``max_ts``.

This module is the reference implementation; ``_speedups.scan`` (C, built
by setup.py when a compiler is there) does exactly the same faster, and
``scan`` is whichever is available. Tests run both.
"""

from __future__ import annotations

DONE, NEED, ERROR = 0, 1, 2

# flags
REQUIRE_KEY = 1
CHECK_TIMESTAMPS = 2

# per-record verdicts
NO_KEY, BAD_TIMESTAMP = 0, 1

# what stopped a scan with ERROR: a = kind, b = detail
ERR_VARINT = 1  # b = field: a varint that runs past the record or overflows
ERR_LENGTH = 2  # b = the negative record length
ERR_PAST_END = 3  # b = field * 2**32 + declared size (size as unsigned 32 bits)
ERR_NEGATIVE = 4  # b = field * 2**32 + value (as unsigned 32 bits)
ERR_LEFTOVER = 5  # b = length * 2**32 + bytes the fields took
ERR_OFFSET_DELTA = 6  # b = the offset delta

# fields, for messages
LENGTH, ATTRIBUTES, TIMESTAMP, OFFSET_DELTA, KEY, VALUE, HEADER_COUNT, HEADER_KEY, HEADER_VALUE = range(9)
FIELD_NAMES = (
    "length",
    "attributes",
    "timestamp delta",
    "offset delta",
    "key",
    "value",
    "header count",
    "header key",
    "header value",
)

_U32 = 1 << 32
_I64_MIN = -(1 << 63)
_I64_SPAN = 1 << 64


class Unreadable(Exception):
    """A record cannot be read: args are (kind, detail) as in an ERROR."""


class _Short(Exception):
    """The record's length prefix is not whole in the buffer yet."""


class SliceReader:
    """The fields of one record that lies whole in ``buf[p:stop]``.

    The record readers (this one, and the streaming one the compressed
    path uses for records larger than its window) share ``read_record``,
    so both check the same things in the same order."""

    __slots__ = ("buf", "p", "stop")

    def __init__(self, buf, p: int, stop: int):
        self.buf, self.p, self.stop = buf, p, stop

    def byte(self, field: int) -> int:
        if self.p >= self.stop:
            raise Unreadable(ERR_VARINT, field)
        b = self.buf[self.p]
        self.p += 1
        return b

    def skip(self, field: int, n: int) -> None:
        if n > self.stop - self.p:
            raise Unreadable(ERR_PAST_END, field_detail(field, n))
        self.p += n

    def left(self) -> int:
        return self.stop - self.p


def field_detail(field: int, value: int) -> int:
    return field * _U32 + (value & 0xFFFFFFFF)


def _zigzag(r, field: int, bits: int) -> int:
    """A zig-zag varint of ``bits`` bits (32: at most 5 bytes, 64: at most 10)."""
    value = shift = 0
    while True:
        b = r.byte(field)
        value |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift >= bits + 3:
            raise Unreadable(ERR_VARINT, field)
    if value >> bits:
        raise Unreadable(ERR_VARINT, field)
    return (value >> 1) ^ -(value & 1)


def _varint(r, field: int) -> int:
    return _zigzag(r, field, 32)


def _varlong(r, field: int) -> int:
    return _zigzag(r, field, 64)


def _sized(r, field: int, lowest: int) -> int:
    """A length and the bytes it counts (skipped); lowest is -1 where null is allowed."""
    n = _varint(r, field)
    if n < lowest:
        raise Unreadable(ERR_NEGATIVE, field_detail(field, n))
    if n > 0:
        r.skip(field, n)
    return n


def read_record(r, size: int, index: int) -> tuple[int, int]:
    """Check the fields of record ``index`` (``size`` bytes after its length
    prefix) from reader ``r``; returns its timestamp delta and key size."""
    if not r.left():
        raise Unreadable(ERR_PAST_END, field_detail(ATTRIBUTES, 1))
    r.byte(ATTRIBUTES)  # unused in magic 2
    delta = _varlong(r, TIMESTAMP)
    offset_delta = _varint(r, OFFSET_DELTA)
    key_size = _sized(r, KEY, -1)
    _sized(r, VALUE, -1)
    headers = _varint(r, HEADER_COUNT)
    if headers < 0:
        raise Unreadable(ERR_NEGATIVE, field_detail(HEADER_COUNT, headers))
    if headers > r.left():
        raise Unreadable(ERR_PAST_END, field_detail(HEADER_COUNT, headers))
    for _ in range(headers):
        _sized(r, HEADER_KEY, 0)
        _sized(r, HEADER_VALUE, -1)
    if r.left():
        raise Unreadable(ERR_LEFTOVER, size * _U32 + size - r.left())
    if offset_delta != index:
        raise Unreadable(ERR_OFFSET_DELTA, offset_delta)
    return delta, key_size


def judge(index: int, ts: int, key_size: int, ts_lo: int, ts_hi: int, flags: int, errors: list) -> None:
    """The per-record verdicts: a null key where one is required first,
    else a timestamp outside the allowed range."""
    if flags & REQUIRE_KEY and key_size == -1:
        errors.append((index, NO_KEY, ts))
    elif flags & CHECK_TIMESTAMPS and ts != -1 and (ts < ts_lo or ts > ts_hi):
        errors.append((index, BAD_TIMESTAMP, ts))


def record_timestamp(base_ts: int, delta: int) -> int:
    """base + delta as Java's long addition gives it (wrapping)."""
    ts = base_ts + delta
    if _I64_MIN <= ts < -_I64_MIN:
        return ts
    return (ts - _I64_MIN) % _I64_SPAN + _I64_MIN


def length_prefix(buf, p: int, end: int) -> tuple[int, int]:
    """A record's length and where its body starts; _Short if the buffer
    ends inside the prefix, Unreadable if it is no varint."""
    value = shift = 0
    while True:
        if p >= end:
            raise _Short
        b = buf[p]
        p += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift == 35:
            raise Unreadable(ERR_VARINT, LENGTH)
    if value >= _U32:
        raise Unreadable(ERR_VARINT, LENGTH)
    return (value >> 1) ^ -(value & 1), p


def python_scan(buf, pos, end, index, count, base_ts, ts_lo, ts_hi, flags, max_ts, errors):
    while index < count:
        start = pos
        try:
            size, p = length_prefix(buf, pos, end)
            if size < 0:
                raise Unreadable(ERR_LENGTH, size)
            stop = p + size
            if stop > end:
                return NEED, start, index, max_ts, stop - start, 0
            delta, key_size = read_record(SliceReader(buf, p, stop), size, index)
        except _Short:
            return NEED, start, index, max_ts, 0, 0
        except Unreadable as e:
            kind, detail = e.args
            return ERROR, start, index, max_ts, kind, detail
        ts = record_timestamp(base_ts, delta)
        max_ts = max(max_ts, ts)
        judge(index, ts, key_size, ts_lo, ts_hi, flags, errors)
        index += 1
        pos = stop
    return DONE, pos, index, max_ts, 0, 0


try:
    from ._speedups import scan as c_scan
except ImportError:  # built without a compiler: the reference serves
    c_scan = None

IMPLEMENTATIONS = {"python": python_scan} | ({"c": c_scan} if c_scan is not None else {})
scan = c_scan or python_scan


def describe(kind: int, detail: int, index: int) -> str:
    """What is wrong with record ``index``, for an ERROR with (kind, detail)."""
    high, low = divmod(detail, _U32)
    value = low - _U32 if low >= 1 << 31 else low
    if kind == ERR_VARINT:
        return f"its {FIELD_NAMES[detail]} is not a valid varint inside the record"
    if kind == ERR_LENGTH:
        return f"invalid record size {detail}"
    if kind == ERR_PAST_END:
        if high == ATTRIBUTES:
            return "it is empty"
        return f"its {FIELD_NAMES[high]} of {value} runs past the end of the record"
    if kind == ERR_NEGATIVE:
        return f"invalid {FIELD_NAMES[high]} size {value}"
    if kind == ERR_LEFTOVER:
        return f"its fields take {low} of the {high} bytes its length gives"
    if kind == ERR_OFFSET_DELTA:
        return f"offset delta {detail} where {index} was expected"
    raise ValueError(f"unknown scan error kind {kind}")
