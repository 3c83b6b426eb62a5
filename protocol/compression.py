"""Compression codecs of record batches, by the id Kafka keeps in bits 0-2
of a batch's attributes.

All four codecs come from cramjam: one wheel, no system libraries, Rust
implementations. Anything cramjam raises comes out as CompressionError.

What the broker writes has to be readable by every client, so each codec
writes what both the Java clients and librdkafka read:

* gzip: a plain gzip member.
* snappy: RAW snappy, no framing. Java producers wrap snappy in xerial's
  framing (magic, two int32 versions, then int32-length-prefixed raw blocks)
  and librdkafka writes raw, so every consumer has to take both anyway
  (snappy-java's SnappyInputStream falls back to raw when the magic is
  missing; librdkafka, kafka-python, sarama, franz-go, kafka-go and
  kafkajs-snappy check for the magic). But @platformatic/kafka hands the
  payload straight to a raw snappy decoder and cannot read xerial, so raw is
  the one format every client reads. Reading takes both.
* lz4: the LZ4 frame format with independent blocks. Kafka's Java reader
  rejects frames whose blocks are linked, and cramjam's one-shot
  lz4.compress links them by default, so the streaming Compressor is used
  with block_linked=False. The frame header checksum is the correct one
  (KIP-57): the broken pre-KIP-57 checksum only ever appeared with magic 0.
* zstd: one zstd frame, at Kafka's default level 3.

Reading a produced batch goes through ``open_stream``: the decompressed
bytes come out in pieces no larger than the caller's buffer, so memory
stays bounded whatever the batch claims, and the total is capped
(``DecompressedTooLarge``). cramjam's decompressors cannot stop and
resume, so the streams use the codec libraries that can: zlib's
decompressobj (max_length), python-lz4's decompression context, python-
zstandard's stream reader (which stops at a frame cut short without an
error: a walk over the frame's blocks first checks that it is whole).
Snappy has no such interface; its format bounds the expansion (under 22
times) and the raw length stands at the front, so each raw block is
checked against the cap before it is inflated, whole.

The streams accept what every client reads, which is less than what
each one accepts: exactly one gzip member, one zstd frame, one lz4 frame
with independent blocks and no dictionary id, nothing after them. Java
reads further gzip members and zstd frames and ignores data after an lz4
frame; librdkafka stops after the first gzip member; a batch that means
different records to different readers is refused.
"""

from __future__ import annotations

import mmap
import zlib
from enum import IntEnum

import cramjam
import lz4.frame
import zstandard

from .errors import CompressionError
from .primitives import INT32


class Compression(IntEnum):
    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


XERIAL_MAGIC = b"\x82SNAPPY\x00"
XERIAL_HEADER_SIZE = 16  # magic + int32 version + int32 compatible version

# Kafka's defaults (compression.gzip.level, compression.zstd.level); lz4 uses
# the fast mode, as librdkafka does.
GZIP_LEVEL = 6
ZSTD_LEVEL = 3

# A bounded decompression first guesses the output at this many times the
# input and grows the guess when it is too small (see _decompress_bounded).
_FIRST_GUESS_RATIO = 8
_FIRST_GUESS_MIN = 64 * 1024
_GROWTH = 4
# Rust's io::Write::write_all reports a full output slice with this message;
# cramjam passes it through when decompress_into runs out of room.
_OUTPUT_FULL = "failed to write whole buffer"


def codec_of(codec: int) -> Compression:
    """The Compression member for an attribute id, or CompressionError."""
    try:
        return Compression(codec)
    except ValueError:
        raise CompressionError(f"unknown compression codec {codec}") from None


def compress(codec: int, data, level: int | None = None) -> bytes:
    """Compress a record-set body for a batch with this codec."""
    codec = codec_of(codec)
    try:
        if codec is Compression.NONE:
            return bytes(data)
        if codec is Compression.GZIP:
            out = cramjam.gzip.compress(data, level=GZIP_LEVEL if level is None else level)
        elif codec is Compression.SNAPPY:
            out = cramjam.snappy.compress_raw(data)
        elif codec is Compression.LZ4:
            compressor = cramjam.lz4.Compressor(level=level, content_checksum=False, block_linked=False)
            # The streaming compressor takes only bytes objects.
            compressor.compress(data if isinstance(data, bytes) else bytes(data))
            out = compressor.finish()
        else:
            out = cramjam.zstd.compress(data, level=ZSTD_LEVEL if level is None else level)
        return bytes(out)
    except Exception as e:  # cramjam's errors and bad input types alike
        raise CompressionError(f"{codec.name.lower()} compression failed: {e}") from e


def decompress(codec: int, data, max_size: int | None = None) -> bytes:
    """Decompress a record-set body.

    With max_size, a body that would inflate past max_size bytes raises
    CompressionError without being inflated in full: snappy declares its
    length up front, and the other codecs decompress into a buffer of bounded
    size that stops them when it is full.
    """
    codec = codec_of(codec)
    if codec is Compression.NONE:
        if max_size is not None and len(data) > max_size:
            raise _too_big(max_size)
        return bytes(data)
    try:
        if codec is Compression.SNAPPY:
            return _snappy_decompress(memoryview(data), max_size)
        module = _MODULES[codec]
        if max_size is None:
            return bytes(module.decompress(data))
        return _decompress_bounded(module, data, max_size)
    except CompressionError:
        raise
    except Exception as e:
        raise CompressionError(f"{codec.name.lower()} decompression failed: {e}") from e


_MODULES = {
    Compression.GZIP: cramjam.gzip,
    Compression.LZ4: cramjam.lz4,
    Compression.ZSTD: cramjam.zstd,
}


def _too_big(max_size: int) -> CompressionError:
    return CompressionError(f"decompressed data exceeds the limit of {max_size} bytes")


def _decompress_bounded(module, data, max_size: int) -> bytes:
    # cramjam has no "stop after N bytes" option, but decompress_into fails as
    # soon as its output buffer is full, having inflated at most that much.
    # One byte of room beyond max_size tells "exactly max_size" from "more".
    limit = max_size + 1
    size = min(limit, max(_FIRST_GUESS_MIN, _FIRST_GUESS_RATIO * len(data)))
    while True:
        out = bytearray(size)
        try:
            n = module.decompress_into(data, out)
        except cramjam.DecompressionError as e:
            if _OUTPUT_FULL not in str(e):
                raise
            if size == limit:
                raise _too_big(max_size) from None
            size = min(limit, size * _GROWTH)
            continue
        if n > max_size:
            raise _too_big(max_size)
        return bytes(memoryview(out)[:n])


SNAPPY_MAX_EXPANSION = 22


def _snappy_decompress(data: memoryview, max_size: int | None) -> bytes:
    # Raw snappy starts with its uncompressed length, so each block's size
    # is checked against the limit before it is inflated.
    out = bytearray()
    for block in _snappy_blocks(data):
        room = None if max_size is None else max_size - len(out)
        if room is not None and cramjam.snappy.decompress_raw_len(block) > room:
            raise _too_big(max_size)
        owner, view = _snappy_block(block, room)
        out += view
        view.release()
        if owner is not None:
            owner.close()
    return bytes(out)


def _snappy_blocks(data: memoryview) -> list[memoryview]:
    if len(data) >= XERIAL_HEADER_SIZE and data[:8] == XERIAL_MAGIC:
        return _xerial_blocks(data)
    return [data]


def _xerial_blocks(data: memoryview) -> list[memoryview]:
    blocks = []
    pos = XERIAL_HEADER_SIZE
    end = len(data)
    while pos < end:
        if end - pos < 4:
            raise CompressionError("xerial snappy stream ends inside a block length")
        (size,) = INT32.unpack_from(data, pos)
        pos += 4
        if size < 0 or size > end - pos:
            raise CompressionError(
                f"xerial snappy block of {size} bytes but {end - pos} bytes remain"
            )
        blocks.append(data[pos : pos + size])
        pos += size
    return blocks


# -- streaming decompression of produced batches --------------------------------


class DecompressedTooLarge(CompressionError):
    """The decompressed bytes would pass the cap given to open_stream."""

    def __init__(self, limit: int):
        super().__init__(f"decompressed data exceeds the limit of {limit} bytes")
        self.limit = limit


# zstd windows above this are refused, as zstd itself (ZSTD_WINDOWLOG_LIMIT_DEFAULT),
# zstd-jni and librdkafka refuse them by default.
ZSTD_MAX_WINDOW = 1 << 27
# Input is handed to zlib and lz4 in slices of this size, so the unconsumed
# rest they keep (and copy) between calls stays small.
_INPUT_SLICE = 64 * 1024
LZ4_MAGIC = b"\x04\x22\x4d\x18"


def open_stream(codec: int, data, limit: int) -> DecompressStream:
    """A stream of the decompressed bytes of a record-set body."""
    codec = codec_of(codec)
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if codec is Compression.NONE:
        raise CompressionError("an uncompressed body is read in place, not streamed")
    if codec is Compression.GZIP:
        return _Gzip(view, limit)
    if codec is Compression.SNAPPY:
        return _Snappy(view, limit)
    if codec is Compression.LZ4:
        return _Lz4(view, limit)
    return _Zstd(view, limit)


class DecompressStream:
    """readinto(buffer) fills at most the buffer and returns how much it
    wrote; 0 means the stream ended where it should. Every failure is a
    CompressionError. ``heavy`` is true when the next read will do much
    more work than the buffer's size (inflate a large snappy block whole)."""

    name = "none"
    heavy = False

    def __init__(self, limit: int):
        self.limit = limit
        self.total = 0

    def readinto(self, out: memoryview) -> int:
        room = self.limit + 1 - self.total
        if len(out) > room:
            out = out[:room]
        try:
            n = self._read(out)
        except CompressionError:
            raise
        except Exception as e:  # the libraries' own errors
            raise CompressionError(f"{self.name} decompression failed: {e}") from e
        self.total += n
        if self.total > self.limit:
            raise DecompressedTooLarge(self.limit)
        return n

    def _read(self, out: memoryview) -> int:
        raise NotImplementedError


class _Gzip(DecompressStream):
    name = "gzip"

    def __init__(self, data: memoryview, limit: int):
        super().__init__(limit)
        self.data = data
        self.pos = 0
        self.tail = b""
        self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing only, as Java reads

    def _read(self, out):
        inflate = self.inflate
        while not inflate.eof:
            if self.tail:
                src = self.tail
            else:
                src = self.data[self.pos : self.pos + _INPUT_SLICE]
                self.pos += len(src)
            chunk = inflate.decompress(src, len(out))
            self.tail = inflate.unconsumed_tail
            if chunk:
                out[: len(chunk)] = chunk
                return len(chunk)
            if not src and not self.tail:
                raise CompressionError("gzip stream ends before its end")
        if inflate.unused_data or self.tail or self.pos < len(self.data):
            raise CompressionError("data after the end of the gzip stream")
        return 0


class _Lz4(DecompressStream):
    name = "lz4"

    def __init__(self, data: memoryview, limit: int):
        super().__init__(limit)
        if len(data) < 7 or data[:4] != LZ4_MAGIC:
            raise CompressionError("not an lz4 frame")
        flags = data[4]
        # Kafka's reader takes version 01 with independent blocks, and
        # reads the dictionary-id bit as a reserved one that must be 0.
        if flags >> 6 != 1 or not flags & 0x20 or flags & 0x01:
            raise CompressionError(f"lz4 frame flags {flags:#04x}: Kafka needs version 1, independent blocks, no dictionary")
        self.data = data
        self.pos = 0
        self.context = lz4.frame.create_decompression_context()
        self.eof = False

    def _read(self, out):
        while not self.eof:
            src = self.data[self.pos : self.pos + _INPUT_SLICE]
            chunk, used, self.eof = lz4.frame.decompress_chunk(self.context, src, max_length=len(out))
            self.pos += used
            if chunk:
                out[: len(chunk)] = chunk
                return len(chunk)
            if not used:
                raise CompressionError("lz4 frame ends before its end mark")
        if self.pos < len(self.data):
            raise CompressionError("data after the end of the lz4 frame")
        return 0


class _Zstd(DecompressStream):
    name = "zstd"

    def __init__(self, data: memoryview, limit: int):
        super().__init__(limit)
        size = zstd_frame_size(data)
        if size < 0:
            raise CompressionError("not a whole zstd frame")
        if size != len(data):
            raise CompressionError("data after the end of the zstd frame")
        decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        self.reader = decompressor.stream_reader(data, read_across_frames=False)

    def _read(self, out):
        return self.reader.readinto(out)


class _Snappy(DecompressStream):
    name = "snappy"

    def __init__(self, data: memoryview, limit: int):
        super().__init__(limit)
        self.blocks = _snappy_blocks(data)
        self.next = 0
        self.owner = None
        self.block = memoryview(b"")
        self.pos = 0

    @property
    def heavy(self) -> bool:
        if self.pos < len(self.block) or self.next == len(self.blocks):
            return False
        try:
            return cramjam.snappy.decompress_raw_len(self.blocks[self.next]) > HEAVY_SNAPPY_BLOCK
        except Exception:  # a bad block fails where it is read
            return False

    def _read(self, out):
        while self.pos == len(self.block):
            self._drop()
            if self.next == len(self.blocks):
                return 0
            self.owner, self.block = _snappy_block(self.blocks[self.next], self.limit - self.total)
            self.next += 1
            self.pos = 0
        n = min(len(out), len(self.block) - self.pos)
        out[:n] = self.block[self.pos : self.pos + n]
        self.pos += n
        return n

    def _drop(self) -> None:
        self.block.release()
        self.block = memoryview(b"")
        if self.owner is not None:
            self.owner.close()
            self.owner = None


# Snappy blocks inflating to more than this are inflated into a mapping of
# their own, given back to the system when read, and not on the event loop
# (``heavy``): a 1 MB block may claim 22 MB.
HEAVY_SNAPPY_BLOCK = 1 << 20


def _snappy_block(block: memoryview, room: int | None):
    """(owner to close or None, view of the inflated block)."""
    size = cramjam.snappy.decompress_raw_len(block)
    # No snappy element expands by more than 64/3 (a 3-byte copy of 64
    # bytes), so a larger claim is a lie; refuse it before allocating.
    if size > len(block) * SNAPPY_MAX_EXPANSION + 64:
        raise CompressionError(f"snappy block of {len(block)} bytes claims {size} uncompressed bytes")
    if room is not None and size > room:
        raise DecompressedTooLarge(room)
    # A large block gets an anonymous mapping: freed, it leaves the process
    # at once, where the allocator would keep a heap block of that size.
    owner = mmap.mmap(-1, size) if size > HEAVY_SNAPPY_BLOCK else None
    view = memoryview(owner if owner is not None else bytearray(size))
    written = cramjam.snappy.decompress_raw_into(block, view)
    if written != size:
        raise CompressionError(f"snappy block declared {size} bytes but held {written}")
    return owner, view


def python_zstd_frame_size(data) -> int:
    """The size of the zstd frame at the start of ``data`` (header, blocks,
    checksum), or -1 if ``data`` holds no whole, well-formed frame there.
    The C version in _speedups is the same loop."""
    end = len(data)
    if end < 5 or bytes(data[:4]) != b"\x28\xb5\x2f\xfd":
        return -1
    fhd = data[4]
    if fhd & 0x08:  # reserved bit
        return -1
    single = fhd >> 5 & 1
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + (1 if single else 0, 2, 4, 8)[fhd >> 6]
    while True:
        if end - pos < 3:
            return -1
        h = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
        pos += 3
        kind = h >> 1 & 3
        if kind == 3:
            return -1
        size = 1 if kind == 1 else h >> 3
        if size > end - pos:
            return -1
        pos += size
        if h & 1:
            break
    if fhd & 0x04:
        pos += 4
    return pos if pos <= end else -1


try:
    from ._speedups import zstd_frame_size
except ImportError:  # built without a compiler
    zstd_frame_size = python_zstd_frame_size
