import gzip
import importlib
import itertools
import resource
import struct

import cramjam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybroker.protocol.compression import (
    XERIAL_MAGIC,
    Compression,
    DecompressedTooLarge,
    codec_of,
    compress,
    decompress,
    open_stream,
)
from pybroker.protocol.errors import CompressionError

CODECS = list(Compression)
COMPRESSED = [c for c in Compression if c is not Compression.NONE]
ids = lambda c: c.name.lower()  # noqa: E731

COMPRESSIBLE = b"the quick brown fox jumps over the lazy dog " * 3000  # > 64 KiB: several blocks


@pytest.mark.parametrize("codec", CODECS, ids=ids)
@given(data=st.binary(max_size=5000))
@settings(max_examples=40, deadline=None)
def test_round_trip(codec, data):
    assert decompress(codec, compress(codec, data)) == data


@pytest.mark.parametrize("codec", CODECS, ids=ids)
@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"])
def test_accepts_any_buffer(codec, wrap):
    compressed = compress(codec, wrap(COMPRESSIBLE))
    assert decompress(codec, wrap(compressed)) == COMPRESSIBLE


def test_codec_ids_are_kafkas():
    assert [int(c) for c in Compression] == [0, 1, 2, 3, 4]
    assert [c.name for c in Compression] == ["NONE", "GZIP", "SNAPPY", "LZ4", "ZSTD"]


@pytest.mark.parametrize("bad", [5, 6, 7, -1])
def test_unknown_codec(bad):
    with pytest.raises(CompressionError, match=f"unknown compression codec {bad}"):
        codec_of(bad)
    with pytest.raises(CompressionError):
        decompress(bad, b"x")
    with pytest.raises(CompressionError):
        compress(bad, b"x")


# -- formats other libraries read and write --------------------------------------


def test_gzip_interoperates_with_stdlib():
    assert gzip.decompress(compress(Compression.GZIP, COMPRESSIBLE)) == COMPRESSIBLE
    two_members = gzip.compress(b"first ") + gzip.compress(b"second")
    assert decompress(Compression.GZIP, two_members) == b"first second"


def test_snappy_writes_raw_snappy():
    out = compress(Compression.SNAPPY, COMPRESSIBLE)
    assert not out.startswith(XERIAL_MAGIC)
    assert bytes(cramjam.snappy.decompress_raw(out)) == COMPRESSIBLE


def xerial(data: bytes, block_size: int = 32 * 1024) -> bytes:
    """snappy-java's stream framing, as Kafka's Java producer writes it."""
    out = XERIAL_MAGIC + struct.pack(">ii", 1, 1)
    for start in range(0, len(data), block_size):
        block = bytes(cramjam.snappy.compress_raw(data[start : start + block_size]))
        out += struct.pack(">i", len(block)) + block
    return out


def test_snappy_reads_xerial_framing():
    framed = xerial(COMPRESSIBLE)
    assert decompress(Compression.SNAPPY, framed) == COMPRESSIBLE
    assert decompress(Compression.SNAPPY, framed, max_size=len(COMPRESSIBLE)) == COMPRESSIBLE
    with pytest.raises(CompressionError, match="exceeds"):
        decompress(Compression.SNAPPY, framed, max_size=len(COMPRESSIBLE) - 1)
    assert decompress(Compression.SNAPPY, xerial(b"")) == b""


def test_snappy_reads_xerial_from_python_snappy():
    snappy = importlib.import_module("snappy")
    kafka_codec = importlib.import_module("kafka.codec")
    assert kafka_codec.has_snappy(), "kafka-python has no snappy library"
    framed = kafka_codec.snappy_encode(COMPRESSIBLE, xerial_compatible=True)
    assert framed.startswith(XERIAL_MAGIC)
    assert decompress(Compression.SNAPPY, framed) == COMPRESSIBLE
    assert decompress(Compression.SNAPPY, snappy.compress(COMPRESSIBLE)) == COMPRESSIBLE


@pytest.mark.parametrize(
    "framed",
    [
        XERIAL_MAGIC + struct.pack(">ii", 1, 1) + b"\x00\x00",  # cut inside a block length
        XERIAL_MAGIC + struct.pack(">iii", 1, 1, 100) + b"short",  # block longer than the rest
        XERIAL_MAGIC + struct.pack(">iii", 1, 1, -5),  # negative block length
        XERIAL_MAGIC + struct.pack(">iii", 1, 1, 3) + b"\xff\xff\xff",  # garbage block
    ],
)
def test_bad_xerial_framing(framed):
    with pytest.raises(CompressionError):
        decompress(Compression.SNAPPY, framed)


def lz4_flags(frame: bytes) -> int:
    assert frame[:4] == b"\x04\x22\x4d\x18"
    return frame[4]


def test_lz4_writes_independent_blocks():
    # Kafka's Java Lz4BlockInputStream rejects frames with linked blocks.
    frame = compress(Compression.LZ4, COMPRESSIBLE * 4)
    flags = lz4_flags(frame)
    assert flags >> 6 == 1, "frame version 1"
    assert flags & 0x20, "block independence"
    assert flags & 0x03 == 0, "reserved bits, which Java checks"


def test_lz4_interoperates_with_python_lz4():
    lz4_frame = importlib.import_module("lz4.frame")
    assert lz4_frame.decompress(compress(Compression.LZ4, COMPRESSIBLE)) == COMPRESSIBLE
    # kafka-python's writer: content size stored, no content checksum.
    theirs = lz4_frame.compress(COMPRESSIBLE, block_linked=False, store_size=True)
    assert decompress(Compression.LZ4, theirs) == COMPRESSIBLE
    with_checksums = lz4_frame.compress(
        COMPRESSIBLE, block_linked=False, content_checksum=True, block_checksum=True
    )
    assert decompress(Compression.LZ4, with_checksums) == COMPRESSIBLE


def test_lz4_rejects_broken_header_checksum():
    # Pre-KIP-57 Kafka computed the frame descriptor checksum over the magic
    # too; that only ever went with magic 0/1, so it is corruption here.
    frame = bytearray(compress(Compression.LZ4, COMPRESSIBLE))
    frame[6] ^= 0xFF  # the HC byte (no content size in our frames)
    with pytest.raises(CompressionError):
        decompress(Compression.LZ4, frame)


def test_zstd_interoperates_with_zstandard():
    zstandard = importlib.import_module("zstandard")
    assert zstandard.ZstdDecompressor().decompress(compress(Compression.ZSTD, COMPRESSIBLE)) == COMPRESSIBLE
    # A streamed frame does not declare its size up front.
    streamed = zstandard.ZstdCompressor(write_content_size=False).compress(COMPRESSIBLE)
    assert decompress(Compression.ZSTD, streamed) == COMPRESSIBLE
    assert decompress(Compression.ZSTD, streamed, max_size=len(COMPRESSIBLE)) == COMPRESSIBLE


# -- errors ------------------------------------------------------------------------


@pytest.mark.parametrize("codec", COMPRESSED, ids=ids)
def test_garbage_raises_compression_error(codec):
    for garbage in (b"", b"\x01", b"not compressed at all", bytes(range(256)) * 4):
        with pytest.raises(CompressionError):
            decompress(codec, garbage)
        with pytest.raises(CompressionError):
            decompress(codec, garbage, max_size=1 << 20)


@pytest.mark.parametrize("codec", COMPRESSED, ids=ids)
@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_truncated_or_flipped_input_raises_only_compression_error(codec, data):
    compressed = bytearray(compress(codec, COMPRESSIBLE[:3000]))
    if data.draw(st.booleans()):
        compressed = compressed[: data.draw(st.integers(0, len(compressed) - 1))]
    else:
        at = data.draw(st.integers(0, len(compressed) - 1))
        compressed[at] ^= 1 << data.draw(st.integers(0, 7))
    try:
        decompress(codec, compressed, max_size=data.draw(st.sampled_from([None, 4000])))
    except CompressionError:
        pass


def test_compress_rejects_non_buffers():
    for codec in CODECS:
        with pytest.raises((CompressionError, TypeError)):
            compress(codec, "text is not bytes")


# -- the size bound ------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS, ids=ids)
def test_max_size_is_inclusive(codec):
    compressed = compress(codec, COMPRESSIBLE)
    assert decompress(codec, compressed, max_size=len(COMPRESSIBLE)) == COMPRESSIBLE
    with pytest.raises(CompressionError, match="exceeds the limit"):
        decompress(codec, compressed, max_size=len(COMPRESSIBLE) - 1)


@pytest.mark.parametrize("codec", [Compression.GZIP, Compression.LZ4, Compression.ZSTD], ids=ids)
def test_max_size_far_above_first_guess(codec):
    # Output more than 100x the input, so the bounded path has to grow its
    # buffer. (Snappy needs no guess: it declares its length.)
    data = bytes(4 << 20)
    compressed = compress(codec, data)
    assert len(compressed) * 100 < len(data)
    assert decompress(codec, compressed, max_size=64 << 20) == data


def test_snappy_bound_is_checked_before_inflating():
    # Raw snappy opens with the uncompressed length; a 2 GiB claim fails at once.
    claim = bytearray()
    value = 2 << 30
    while value >= 0x80:
        claim.append(value & 0x7F | 0x80)
        value >>= 7
    claim.append(value)
    with pytest.raises(CompressionError, match="exceeds"):
        decompress(Compression.SNAPPY, bytes(claim) + b"\x00" * 16, max_size=1 << 20)


@pytest.mark.parametrize("codec", [Compression.GZIP, Compression.LZ4, Compression.ZSTD], ids=ids)
def test_bomb_is_stopped_without_inflating_it(codec):
    # Concatenated frames/members are legal and decompress to their sum:
    # 2048 copies of 1 MiB of zeros claim 2 GiB from a few MiB of input.
    bomb = compress(codec, bytes(1 << 20)) * 2048
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CompressionError, match="exceeds the limit"):
        decompress(codec, bomb, max_size=8 << 20)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 512 * 1024, f"peak memory grew by {grown_kib} KiB"


# -- streams (the produce path) ---------------------------------------------------------


def read_stream(codec, data, limit=1 << 40, sizes=(65536,)):
    stream = open_stream(codec, data, limit)
    out = bytearray()
    for i in itertools.count():
        buf = memoryview(bytearray(sizes[i % len(sizes)]))
        n = stream.readinto(buf)
        assert 0 <= n <= len(buf)
        if not n:
            return bytes(out)
        out += buf[:n]


@pytest.mark.parametrize("codec", COMPRESSED, ids=ids)
@given(data=st.binary(max_size=20000), sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=5))
@settings(max_examples=40, deadline=None)
def test_streams_give_back_what_was_compressed(codec, data, sizes):
    assert read_stream(codec, compress(codec, data), sizes=sizes) == data


@pytest.mark.parametrize("codec", COMPRESSED, ids=ids)
def test_stream_cap_is_inclusive(codec):
    compressed = compress(codec, COMPRESSIBLE)
    assert read_stream(codec, compressed, limit=len(COMPRESSIBLE)) == COMPRESSIBLE
    with pytest.raises(DecompressedTooLarge):
        read_stream(codec, compressed, limit=len(COMPRESSIBLE) - 1)


@pytest.mark.parametrize("codec", [Compression.GZIP, Compression.LZ4, Compression.ZSTD], ids=ids)
def test_stream_of_a_bomb_stays_within_its_buffer(codec):
    bomb = compress(codec, bytes(256 << 20))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stream = open_stream(codec, bomb, 64 << 20)
    buf = memoryview(bytearray(1 << 16))
    with pytest.raises(DecompressedTooLarge):
        while stream.readinto(buf):
            pass
    assert stream.total <= (64 << 20) + 1
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 16 * 1024, f"peak memory grew by {grown_kib} KiB"


@pytest.mark.parametrize("codec", COMPRESSED, ids=ids)
@given(data=st.data())
@settings(max_examples=40, deadline=None)
def test_streams_of_damaged_input_end_cleanly_or_raise_compression_errors(codec, data):
    raw = bytearray(compress(codec, COMPRESSIBLE[:3000]))
    for _ in range(data.draw(st.integers(1, 3))):
        if data.draw(st.booleans()):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        else:
            del raw[data.draw(st.integers(0, len(raw) - 1)) :]
            if not raw:
                break
    try:
        read_stream(codec, bytes(raw), limit=1 << 20)
    except CompressionError:
        pass
