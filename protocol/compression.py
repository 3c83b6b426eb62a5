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
"""

from __future__ import annotations

from enum import IntEnum

import cramjam

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
    if len(data) >= XERIAL_HEADER_SIZE and data[:8] == XERIAL_MAGIC:
        blocks = _xerial_blocks(data)
    else:
        blocks = [data]
    # Raw snappy starts with its uncompressed length, so the limit is checked
    # and the output allocated exactly, before anything is inflated.
    sizes = [cramjam.snappy.decompress_raw_len(block) for block in blocks]
    total = sum(sizes)
    if max_size is not None and total > max_size:
        raise _too_big(max_size)
    for block, size in zip(blocks, sizes):
        # No snappy element expands by more than 64/3 (a 3-byte copy of 64
        # bytes), so a larger claim is a lie; refuse it before allocating.
        if size > len(block) * SNAPPY_MAX_EXPANSION + 64:
            raise CompressionError(f"snappy block of {len(block)} bytes claims {size} uncompressed bytes")
    out = bytearray(total)
    view = memoryview(out)
    pos = 0
    for block, size in zip(blocks, sizes):
        written = cramjam.snappy.decompress_raw_into(block, view[pos : pos + size])
        if written != size:
            raise CompressionError(f"snappy block declared {size} bytes but held {written}")
        pos += size
    return bytes(out)


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
