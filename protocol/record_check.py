"""The checks a broker makes on a produced record batch, in Kafka's order,
with Kafka's error codes; nothing invalid may reach the log.

1. The partition's records (KafkaApis, ProduceRequest.validateRecords,
   ByteBufferLogInputStream): a whole first batch, of magic 2, zstd only
   from Produce v7, and no second batch. A batch length below 14 or a
   magic byte outside 0-2 is CORRUPT_MESSAGE; no whole batch, magic 0 or
   1, or a second batch is INVALID_RECORD. Bytes after the first batch that
   do not make a whole batch are ignored, as Kafka ignores them (the log
   stores the batch alone).
2. The batch header (UnifiedLog.analyzeAndValidateRecords): base offset 0,
   size within max.message.bytes (MESSAGE_TOO_LARGE), the CRC
   (CORRUPT_MESSAGE).
3. The batch's offsets and flags (LogValidator.validateBatch), each
   INVALID_RECORD: last offset delta + 1 equal to the record count and
   positive, no control batch, a base sequence for a producer id. An
   unknown codec is INVALID_RECORD too (Kafka fails it with an internal
   error).
4. Every record (DefaultRecord, LogValidator.validateRecord): the framing
   of record_scan.py, then the record count against the body (too few or
   too many bytes), each INVALID_RECORD at the first failure; then, for
   every record, a key on compacted topics and the timestamp within
   message.timestamp.before/after.max.ms of now on CreateTime topics
   (LogAppendTime ones take no client timestamps). Those are collected for
   the whole batch and answered with record_errors (Produce v8+):
   INVALID_TIMESTAMP if any timestamp failed, else INVALID_RECORD.

A compressed batch is read through a decompression stream into a window
of at most WINDOW_MAX bytes that slides over the records; a record larger
than the window is checked field by field as it streams past. Memory
stays bounded whatever the batch claims. The decompressed size is capped
at ``decompressed_limit``: DEFLATE_MAX_RATIO times max.message.bytes. No
gzip body can inflate by more than 1032 times (deflate's limit), lz4 and
snappy by far less, so no batch of those codecs within max.message.bytes
reaches the cap; only zstd can (its RLE blocks), and only for data no
other codec could carry. Past it the batch gets MESSAGE_TOO_LARGE, which
makes the Java producer split the batch and retry. A body that does not
decompress is INVALID_RECORD (Kafka answers an internal error).

Kafka then rewrites the batch's max timestamp from the records (some
clients leave it at -1); ``BatchCheck.apply`` does the same.

Work is done in steps: ``run(deadline)`` returns False when the deadline
passed first, and a later ``run()`` (in a worker thread, say) carries on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import crc32c

from . import record_scan
from .compression import Compression, DecompressedTooLarge, open_stream
from .error_codes import ErrorCode
from .errors import CompressionError, ProtocolError
from .primitives import INT32, INT64
from .record_batch import (
    ATTRIBUTES_OFFSET,
    CONTROL_BIT,
    CREATE_TIME,
    HEADER,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC_OFFSET,
    MAX_CODEC,
    TIMESTAMP_TYPE_BIT,
    RecordBatch,
)
from .record_scan import (
    BAD_TIMESTAMP,
    CHECK_TIMESTAMPS,
    DONE,
    ERROR,
    NEED,
    NO_KEY,
    REQUIRE_KEY,
    Unreadable,
    describe,
    judge,
    length_prefix,
    read_record,
    record_timestamp,
)

LEGACY_MIN_SIZE = 14  # the smallest magic 0 message: Kafka's floor for any batch length
ATTRIBUTES_LOW_BYTE = 22  # the codec bits live in the low byte of the int16 at 21
DEFLATE_MAX_RATIO = 1032
INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
WINDOW_MIN = 16 * 1024
WINDOW = 256 * 1024
WINDOW_MAX = 1024 * 1024
MAX_RECORD_ERRORS_IN_MESSAGE = 3
_CLIENT_LOG_APPEND_TIME = 2  # a per-record verdict beside record_scan's NO_KEY, BAD_TIMESTAMP


class RecordsRejected(ProtocolError):
    """The batch is refused with ``code``; ``record_errors`` lists (batch
    index, message) for the records at fault, where Kafka names them."""

    def __init__(self, code: ErrorCode, message: str, record_errors: Sequence[tuple[int, str]] = ()):
        super().__init__(message)
        self.code = code
        self.message = message
        self.record_errors = list(record_errors)


def _invalid(message: str) -> RecordsRejected:
    return RecordsRejected(ErrorCode.INVALID_RECORD, message)


def _corrupt(message: str) -> RecordsRejected:
    return RecordsRejected(ErrorCode.CORRUPT_MESSAGE, message)


def decompressed_limit(max_message_bytes: int) -> int:
    return min(INT32_MAX, DEFLATE_MAX_RATIO * max(max_message_bytes, 1))


# -- 1. the partition's records -------------------------------------------------


def produced_batch(records, version: int) -> memoryview:
    """The one batch of a Produce partition's records, as a view of them."""
    if records is None:
        raise _invalid(f"Produce v{version} needs a record batch per partition; got none")
    view = memoryview(records)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    first = _whole_batch(view, 0)
    if first is None:
        raise _invalid(f"Produce v{version} needs a record batch per partition; got {len(view)} bytes that hold none")
    magic = first[MAGIC_OFFSET]
    if magic != 2:
        raise _invalid(f"Produce v{version} takes record batches of magic 2 only; this one has magic {magic}")
    if version < 7 and len(first) > ATTRIBUTES_LOW_BYTE and first[ATTRIBUTES_LOW_BYTE] & 0x07 == Compression.ZSTD:
        raise RecordsRejected(ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, f"zstd needs Produce v7 or later, not v{version}")
    if _whole_batch(view, len(first)) is not None:
        raise _invalid(f"Produce v{version} takes exactly one record batch per partition")
    return first


def _whole_batch(view: memoryview, pos: int) -> memoryview | None:
    """The batch at ``pos`` if all of it is there, None if not; a length or
    magic no batch can have is CORRUPT_MESSAGE, as Kafka's reader says."""
    left = len(view) - pos
    if left < LOG_OVERHEAD:
        return None
    (length,) = INT32.unpack_from(view, pos + 8)
    if length < LEGACY_MIN_SIZE:
        raise _corrupt(f"record batch at byte {pos} declares length {length}, below the least of {LEGACY_MIN_SIZE}")
    if left <= MAGIC_OFFSET:
        return None
    magic = view[pos + MAGIC_OFFSET]
    if magic > 2:
        raise _corrupt(f"record batch at byte {pos} has magic {magic - 256 if magic > 127 else magic}")
    if left < LOG_OVERHEAD + length:
        return None
    return view[pos : pos + LOG_OVERHEAD + length]


# -- 2-4. the batch and its records ---------------------------------------------


class Rules:
    """What a partition's config and the clock say a batch must meet."""

    __slots__ = ("compact", "log_append_time", "max_message_bytes", "now", "ts_hi", "ts_lo", "where")

    def __init__(
        self,
        where: str,
        *,
        max_message_bytes: int,
        compact: bool,
        log_append_time: bool,
        before_max_ms: int,
        after_max_ms: int,
        now: int,
    ):
        self.where = where
        self.max_message_bytes = max_message_bytes
        self.compact = compact
        self.log_append_time = log_append_time
        self.now = now
        # The accepted range, clipped to int64 (a limit of Long.MAX_VALUE
        # means "any").
        self.ts_lo = max(INT64_MIN, now - before_max_ms)
        self.ts_hi = min(INT64_MAX, now + after_max_ms)


class BatchCheck:
    """The checks of one produced batch. The header's are made at once
    (RecordsRejected); the records' by ``run``."""

    def __init__(self, view: memoryview, rules: Rules, scan=None):
        self.rules = rules
        self.scan = scan or record_scan.scan
        where = rules.where
        size = len(view)
        (base_offset,) = INT64.unpack_from(view, 0)
        if base_offset != 0:
            raise _invalid(f"a produced batch must have base offset 0, not {base_offset} ({where})")
        if size > rules.max_message_bytes:
            raise RecordsRejected(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"batch of {size} bytes exceeds max.message.bytes {rules.max_message_bytes} ({where})",
            )
        if size < HEADER_SIZE:
            raise _corrupt(f"batch of {size} bytes is shorter than its {HEADER_SIZE}-byte header ({where})")
        # The header once, as a tuple: this runs for every produced batch.
        _, _, _, _, crc, attributes, last_delta, base_ts, _, producer_id, _, base_sequence, count = HEADER.unpack_from(
            view
        )
        computed = crc32c.crc32c(view[ATTRIBUTES_OFFSET:])
        if computed != crc:
            raise _corrupt(f"batch CRC is {computed:#010x}, not the stored {crc:#010x} ({where})")
        span = last_delta + 1
        if span <= 0:
            raise _invalid(f"batch has last offset delta {last_delta} ({where})")
        if count <= 0:
            raise _invalid(f"batch declares {count} records ({where})")
        if count != span:
            raise _invalid(f"batch declares {count} records but spans {span} offsets ({where})")
        if attributes & CONTROL_BIT:
            raise _invalid(f"clients may not produce control batches ({where})")
        if producer_id >= 0 and base_sequence < 0:
            raise _invalid(f"batch of producer id {producer_id} has base sequence {base_sequence} ({where})")
        codec = attributes & 0x07
        if codec > MAX_CODEC:
            raise _invalid(f"unknown compression codec {codec} ({where})")
        self.batch = RecordBatch(view)
        self.count = count
        self.done = False
        self.max_timestamp = -1
        self._base_ts = base_ts
        self._errors: list[tuple[int, int, int]] = []
        self._index = 0
        self._lat_batch = bool(attributes & TIMESTAMP_TYPE_BIT)
        flags = REQUIRE_KEY if rules.compact else 0
        if not rules.log_append_time and not self._lat_batch:
            flags |= CHECK_TIMESTAMPS
        self._flags = flags
        self._compressed = bool(codec)
        self._window = None
        if codec:
            try:
                stream = open_stream(codec, view[HEADER_SIZE:], decompressed_limit(rules.max_message_bytes))
            except CompressionError as e:
                raise self._undecompressable(e) from None
            self._window = _Window(stream, _window_size(size - HEADER_SIZE))

    # -- running ---------------------------------------------------------------

    def run(self, deadline: float | None = None) -> bool:
        """Check records until done (True) or past ``deadline`` (a
        time.perf_counter() value; False: call again to go on)."""
        if self.done:
            return True
        try:
            if not self._compressed:
                self._scan_in_place()
            elif not self._scan_stream(deadline):
                return False
        except BaseException:
            self._window = None  # a refused batch lets its buffers go at once
            raise
        self._window = None
        self._judge_batch()
        self.done = True
        return True

    def apply(self) -> None:
        """Kafka's rewrite of the header after a check: on CreateTime topics
        the max timestamp is the records' (and the type CreateTime)."""
        if not self.rules.log_append_time:
            batch = self.batch
            if self._lat_batch or batch.max_timestamp != self.max_timestamp:
                batch.set_max_timestamp(self.max_timestamp, CREATE_TIME)

    def _scan_in_place(self) -> None:
        view = self.batch.view
        r = self.rules
        status, pos, index, max_ts, a, b = self.scan(
            view, HEADER_SIZE, len(view), 0, self.count, self._base_ts, r.ts_lo, r.ts_hi, self._flags, -1, self._errors
        )
        if status == ERROR:
            raise self._unreadable(index, a, b)
        if status == NEED:
            raise self._short(index, a, len(view) - pos)
        if pos != len(view):
            raise self._leftover()
        self.max_timestamp = max_ts

    def _scan_stream(self, deadline: float | None) -> bool:
        win = self._window
        base_ts, lo, hi, flags = self._base_ts, self.rules.ts_lo, self.rules.ts_hi, self._flags
        try:
            while self._index < self.count:
                if _paused(win, deadline):
                    return False
                status, pos, index, max_ts, a, b = self.scan(
                    win.buf, win.lo, win.hi, self._index, self.count, base_ts, lo, hi, flags,
                    self.max_timestamp, self._errors,
                )
                win.lo, self._index, self.max_timestamp = pos, index, max_ts
                if status == ERROR:
                    raise self._unreadable(index, a, b)
                if status == DONE:
                    break
                # NEED: the record (a bytes) or its length prefix (a = 0)
                # runs past the window.
                if a > WINDOW_MAX:
                    if deadline is not None:
                        return False  # streaming it may take long: not inline
                    self._stream_large_record()
                    continue
                need = a or win.hi - win.lo + 1
                if win.fill(need) < need:
                    raise self._short(index, a, win.hi - win.lo)
            if _paused(win, deadline):
                return False
            if win.fill(1):
                raise self._leftover()
        except DecompressedTooLarge as e:
            raise RecordsRejected(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"batch decompresses to more than {e.limit} bytes "
                f"({DEFLATE_MAX_RATIO} x max.message.bytes) ({self.rules.where})",
            ) from None
        except CompressionError as e:
            raise self._undecompressable(e) from None
        return True

    def _stream_large_record(self) -> None:
        """Check the record at the window's start, too large for the window,
        field by field as its bytes stream through."""
        win = self._window
        index = self._index
        size, body = length_prefix(win.buf, win.lo, win.hi)
        prefix = body - win.lo
        win.lo = body
        reader = _StreamReader(win, size)
        try:
            delta, key_size = read_record(reader, size, index)
        except Unreadable as e:
            raise self._unreadable(index, *e.args) from None
        except _EndsEarly:
            raise self._short(index, prefix + size, prefix + size - reader.remaining) from None
        ts = record_timestamp(self._base_ts, delta)
        self.max_timestamp = max(self.max_timestamp, ts)
        judge(index, ts, key_size, self.rules.ts_lo, self.rules.ts_hi, self._flags, self._errors)
        self._index = index + 1

    # -- verdicts --------------------------------------------------------------

    def _judge_batch(self) -> None:
        """Per-record verdicts of the whole batch, answered together."""
        rules = self.rules
        errors = self._errors
        if self._lat_batch:
            # Every record of a LogAppendTime batch reads the header's max
            # timestamp; producers may not set that type.
            lat = self.batch.max_timestamp
            if rules.log_append_time or lat == -1:
                kind = _CLIENT_LOG_APPEND_TIME
            elif not rules.ts_lo <= lat <= rules.ts_hi:
                kind = BAD_TIMESTAMP
            else:
                kind = None
            if kind is not None:
                keyless = {i for i, _, _ in errors}
                errors = sorted(errors + [(i, kind, lat) for i in range(self.count) if i not in keyless])
            self.max_timestamp = lat
        if not errors:
            return
        messages = [(i, self._record_message(i, kind, ts)) for i, kind, ts in errors]
        if any(kind != NO_KEY for _, kind, _ in errors):
            raise RecordsRejected(
                ErrorCode.INVALID_TIMESTAMP,
                f"{len(errors)} of {self.count} records rejected for their timestamps ({rules.where})",
                messages,
            )
        shown = "; ".join(m for _, m in messages[:MAX_RECORD_ERRORS_IN_MESSAGE])
        raise RecordsRejected(
            ErrorCode.INVALID_RECORD, f"{len(errors)} of {self.count} records rejected ({rules.where}): {shown}", messages
        )

    def _record_message(self, index: int, kind: int, ts: int) -> str:
        rules = self.rules
        if kind == NO_KEY:
            return f"record {index} has no key; a compacted topic keeps records by key"
        if kind == _CLIENT_LOG_APPEND_TIME:
            return f"record {index} has timestamp type LogAppendTime, which only the broker may set"
        return f"record {index} has timestamp {ts}, outside the accepted [{rules.ts_lo}, {rules.ts_hi}]"

    def _unreadable(self, index: int, kind: int, detail: int) -> RecordsRejected:
        return _invalid(f"record {index} cannot be read: {describe(kind, detail, index)} ({self.rules.where})")

    def _short(self, index: int, need: int, have: int) -> RecordsRejected:
        if need:
            what = f"needs {need} bytes but {have} remain"
        else:
            what = "the batch ends inside its length"
        return _invalid(
            f"batch declares {self.count} records but ends early: record {index} {what} ({self.rules.where})"
        )

    def _leftover(self) -> RecordsRejected:
        return _invalid(f"bytes follow the last of the {self.count} records the batch declares ({self.rules.where})")

    def _undecompressable(self, e: Exception) -> RecordsRejected:
        return _invalid(f"records cannot be decompressed: {e} ({self.rules.where})")


def _paused(win: _Window, deadline: float | None) -> bool:
    """Past the deadline, or about to do a large piece of work at once."""
    return deadline is not None and (time.perf_counter() > deadline or win.stream.heavy)


def _window_size(compressed: int) -> int:
    return max(WINDOW_MIN, min(WINDOW, 32 * compressed))


class _Window:
    """Decompressed bytes seen through ``buf[lo:hi]``, filled from a stream."""

    __slots__ = ("buf", "eof", "hi", "lo", "stream")

    def __init__(self, stream, size: int):
        self.stream = stream
        self.buf = bytearray(size)
        self.lo = self.hi = 0
        self.eof = False

    def fill(self, want: int) -> int:
        """Make ``want`` bytes visible (fewer only at the end of the stream);
        returns how many are."""
        have = self.hi - self.lo
        if have >= want or self.eof:
            return have
        if want > len(self.buf) - self.lo:
            size = max(len(self.buf), want)
            if size > len(self.buf):
                fresh = bytearray(size)
                fresh[:have] = memoryview(self.buf)[self.lo : self.hi]
                self.buf = fresh
            else:
                self.buf[:have] = self.buf[self.lo : self.hi]
            self.lo, self.hi = 0, have
        view = memoryview(self.buf)
        while self.hi - self.lo < want:
            n = self.stream.readinto(view[self.hi :])
            if not n:
                self.eof = True
                break
            self.hi += n
        return self.hi - self.lo

    def skip(self, n: int) -> int:
        """Drop ``n`` bytes (fewer only at the end of the stream); returns
        how many were dropped."""
        left = n
        while left:
            if self.lo == self.hi:
                self.lo = self.hi = 0
                if len(self.buf) < WINDOW:  # a long stream: fewer, larger reads
                    self.buf = bytearray(WINDOW)
                if not self.fill(1):
                    break
            take = min(left, self.hi - self.lo)
            self.lo += take
            left -= take
        return n - left


class _EndsEarly(Exception):
    pass


class _StreamReader:
    """record_scan's reader interface over a window, for one record."""

    __slots__ = ("remaining", "win")

    def __init__(self, win: _Window, size: int):
        self.win = win
        self.remaining = size

    def byte(self, field: int) -> int:
        if not self.remaining:
            raise Unreadable(record_scan.ERR_VARINT, field)
        win = self.win
        if win.lo == win.hi and not win.fill(1):
            raise _EndsEarly
        b = win.buf[win.lo]
        win.lo += 1
        self.remaining -= 1
        return b

    def skip(self, field: int, n: int) -> None:
        if n > self.remaining:
            raise Unreadable(record_scan.ERR_PAST_END, record_scan.field_detail(field, n))
        skipped = self.win.skip(n)
        self.remaining -= skipped
        if skipped < n:
            raise _EndsEarly

    def left(self) -> int:
        return self.remaining
