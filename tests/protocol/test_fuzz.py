"""The decoders, fuzzed: whatever the bytes, only ProtocolError comes out,
and no declared length makes a decoder allocate for it.

Inputs are valid encodings of every request and response of every API key
and version (values drawn with a seeded RNG), then broken: truncated at every
position, length-sized fields replaced at every position with absurd values
(0x7fffffff, -2, 0x7fff, varints 0xffffffff and 0x7fffffff), bits flipped,
decoded with the wrong version; plus random bytes, Hypothesis-generated
inputs and streams, and record batches (plain, compressed, control) broken
the same way. Any exception that is not a ProtocolError fails the test, with
the input in the message.

Everything is seeded (Hypothesis runs derandomized), and the counts are
bounded so the file stays well under a minute.
"""

from __future__ import annotations

import functools
import importlib
import random
import struct
import tracemalloc
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybroker.protocol.codegen import SCHEMA_DIR, Schema, within
from pybroker.protocol.errors import CompressionError, DecodeError, FrameTooLargeError, ProtocolError
from pybroker.protocol.framing import FrameDecoder, decode_request, decode_response, encode_request, peek_request
from pybroker.protocol.messages import APIS
from pybroker.protocol.registry import api_info

SEED = 0x5EED_CAFE
FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)
SCHEMAS = {
    (s.api_key, s.type): s for s in (Schema(p) for p in sorted(SCHEMA_DIR.glob("*.json"))) if s.api_key is not None
}
KEYS = sorted(APIS)


def versions(key: int) -> range:
    lo, hi = api_info(key).valid_versions
    return range(lo, hi + 1)


def decoder(key: int, kind: str):
    info = api_info(key)
    return info.request if kind == "request" else info.response


# -- valid inputs to break ------------------------------------------------------------


def _scalar(rng: random.Random, t: str):
    if t in ("int8", "int16", "int32", "int64"):
        return rng.choice([-1, 0, 1, 5, 127, -100])
    if t in ("uint16", "uint32"):
        return rng.choice([0, 1, 200])
    if t == "bool":
        return rng.random() < 0.5
    if t == "float64":
        return -0.5
    if t == "string":
        return rng.choice(["", "t", "t\u00f3pico", "y" * 130])
    if t in ("bytes", "records"):
        return bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 5, 20])))
    if t == "uuid":
        return uuid.UUID(int=rng.getrandbits(128))
    raise AssertionError(t)


def _build(rng, module, struct_, version, flexible, depth=0):
    kwargs = {}
    for f in struct_.fields:
        if f.mode(version) is None:
            continue
        if within(f.nullable, version) and rng.random() < 0.2:
            kwargs[f.attr] = None
        elif f.is_array:
            n = rng.choice([1, 2]) if depth < 2 else 1
            if f.struct is not None:
                kwargs[f.attr] = [_build(rng, module, f.struct, version, flexible, depth + 1) for _ in range(n)]
            else:
                kwargs[f.attr] = [_scalar(rng, f.elem) for _ in range(n)]
        elif f.struct is not None:
            kwargs[f.attr] = _build(rng, module, f.struct, version, flexible, depth + 1)
        else:
            kwargs[f.attr] = _scalar(rng, f.type)
    if flexible and rng.random() < 0.5:
        known = {f.tag for f in struct_.fields if f.tag is not None}
        kwargs["unknown_tags"] = {t: b"\x01\x02" for t in (60, 61) if t not in known}
    return getattr(module, struct_.name)(**kwargs)


@functools.cache
def sample(key: int, version: int, kind: str):
    """A valid, non-trivial message of this API, version and kind."""
    schema = SCHEMAS[(key, kind)]
    module = importlib.import_module(f"pybroker.protocol.messages.{schema.module}")
    rng = random.Random(f"{SEED}/{key}/{version}/{kind}")
    return _build(rng, module, schema.top, version, schema.flexible_at(version))


@functools.cache
def sample_bytes(key: int, version: int, kind: str) -> bytes:
    data = sample(key, version, kind).encode(version)
    assert decoder(key, kind).decode(data, version) == sample(key, version, kind)
    return data


# -- mutations ----------------------------------------------------------------------------

# (bytes written at a position, how many bytes they replace there)
HUGE = [
    (b"\x7f\xff\xff\xff", 4),  # int32 length 2**31-1
    (b"\xff\xff\xff\xfe", 4),  # int32 length -2
    (b"\x7f\xff", 2),  # int16 length 32767
    (b"\xff\xfe", 2),  # int16 length -2
    (b"\xff\xff\xff\xff\x0f", 1),  # unsigned varint 0xffffffff
    (b"\xff\xff\xff\xff\x07", 1),  # unsigned varint 0x7fffffff
    (b"\xff\xff\xff\xff\xff\xff", 1),  # a varint that never ends
]


def huge_lengths(data: bytes):
    for i in range(len(data)):
        for rep, width in HUGE:
            yield data[:i] + rep + data[i + width :]


def bit_flips(data: bytes, rng: random.Random, n: int):
    if not data:
        return
    for _ in range(n):
        out = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 8])):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        yield bytes(out)


def attempt(fn, data, *args):
    """Run a decoder; True if it decoded, False if it raised a ProtocolError.
    Anything else fails the test with the input that caused it."""
    try:
        fn(data, *args)
    except ProtocolError:
        return False
    except Exception as exc:  # noqa: BLE001 - that is the point
        raise AssertionError(
            f"{getattr(fn, '__qualname__', fn)}{args!r} raised {type(exc).__name__}: {exc}\n"
            f"input ({len(data)} bytes): {bytes(data).hex()}"
        ) from exc
    return True


def decode_checked(data, cls, version):
    """Decode; whatever decodes must encode again, and that encoding must be
    stable (decode(encode(m)) encodes the same), or the broker could accept a
    request it cannot echo or log."""
    msg = cls.decode(data, version)
    try:
        enc = msg.encode(version)
    except ProtocolError as exc:
        raise AssertionError(f"decoded {msg!r} but cannot encode it again: {exc}") from exc
    assert cls.decode(enc, version).encode(version) == enc


# -- every decoder of every API, every version ---------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_broken_encodings_of_every_version(key):
    rng = random.Random(f"{SEED}/flips/{key}")
    for kind in ("request", "response"):
        cls = decoder(key, kind)
        for version in versions(key):
            data = sample_bytes(key, version, kind)
            # A strict prefix never decodes: decode() must fill the input.
            for n in range(len(data)):
                assert not attempt(cls.decode, data[:n], version), (kind, version, n)
            for broken in huge_lengths(data):
                attempt(decode_checked, broken, cls, version)
            for broken in bit_flips(data, rng, 40):
                attempt(decode_checked, broken, cls, version)
            # another version's decoder on these bytes
            for other in versions(key):
                attempt(decode_checked, data, cls, other)
            assert not attempt(cls.decode, data + b"\x00", version)


@pytest.mark.parametrize("key", KEYS)
def test_random_bytes_to_every_decoder(key):
    rng = random.Random(f"{SEED}/random/{key}")
    for kind in ("request", "response"):
        cls = decoder(key, kind)
        for version in versions(key):
            for _ in range(25):
                n = rng.choice([0, 1, 2, 4, 7, 16, 64, 200])
                data = bytes(rng.getrandbits(8) for _ in range(n))
                attempt(decode_checked, data, cls, version)
                # bytes that mostly look like small lengths and counts
                data = bytes(rng.choice([0, 1, 2, 0xFF]) for _ in range(n))
                attempt(decode_checked, data, cls, version)


@given(st.data())
@FUZZ
def test_hypothesis_bytes_to_any_decoder(data):
    key = data.draw(st.sampled_from(KEYS))
    kind = data.draw(st.sampled_from(["request", "response"]))
    version = data.draw(st.sampled_from(list(versions(key))))
    payload = data.draw(st.binary(max_size=256))
    attempt(decode_checked, payload, decoder(key, kind), version)


@given(st.data())
@FUZZ
def test_hypothesis_edits_of_valid_encodings(data):
    key = data.draw(st.sampled_from(KEYS))
    kind = data.draw(st.sampled_from(["request", "response"]))
    version = data.draw(st.sampled_from(list(versions(key))))
    buf = bytearray(sample_bytes(key, version, kind))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(buf)))
        edit = data.draw(st.sampled_from(["set", "insert", "delete"]))
        chunk = data.draw(st.binary(min_size=1, max_size=5))
        if edit == "set":
            buf[pos : pos + len(chunk)] = chunk
        elif edit == "insert":
            buf[pos:pos] = chunk
        else:
            del buf[pos : pos + len(chunk)]
    attempt(decode_checked, bytes(buf), decoder(key, kind), version)


# -- frames and headers ------------------------------------------------------------------


def _request_frames():
    rng = random.Random(f"{SEED}/frames")
    frames = []
    for key in KEYS:
        for version in versions(key)[-2:]:
            client_id = rng.choice([None, "", "client-\u00e9"])
            frames.append(encode_request(sample(key, version, "request"), version, rng.randint(-5, 5), client_id))
    return frames


REQUEST_FRAMES = _request_frames()


def _decode_frame(frame):
    peek_request(frame)
    decode_request(frame)


def test_broken_request_frames():
    rng = random.Random(f"{SEED}/broken-frames")
    for wire in REQUEST_FRAMES:
        frame = wire[4:]
        assert attempt(_decode_frame, frame)
        for n in range(len(frame)):
            assert not attempt(decode_request, frame[:n])
        # the header and the first bytes of the body, with absurd lengths
        for broken in huge_lengths(frame[:24]):
            attempt(_decode_frame, broken + frame[24:])
        for broken in bit_flips(frame, rng, 30):
            attempt(_decode_frame, broken)
        # any key and version in front of this body
        for key, version in ((rng.randint(-3, 100), rng.randint(-3, 40)) for _ in range(10)):
            attempt(_decode_frame, struct.pack(">hh", key, version) + frame[4:])


def _pump(stream: bytes, cuts, max_frame: int):
    """Feed a stream in pieces; decode every frame that comes out; stop at
    the first ProtocolError (a broker closes the connection there)."""
    dec = FrameDecoder(max_frame_size=max_frame)
    pos = 0
    try:
        for cut in [*cuts, len(stream)]:
            dec.feed(stream[pos:cut])
            pos = max(pos, cut)
            while (frame := dec.next_frame()) is not None:
                attempt(_decode_frame, frame)
    except ProtocolError:
        pass
    except Exception as exc:
        raise AssertionError(f"FrameDecoder raised {type(exc).__name__}: {exc}\ninput: {stream.hex()}") from exc


def test_frame_decoder_on_broken_streams():
    rng = random.Random(f"{SEED}/streams")
    for _ in range(150):
        stream = b"".join(rng.sample(REQUEST_FRAMES, 4))
        stream = next(bit_flips(stream, rng, 1)) if rng.random() < 0.7 else stream
        cuts = sorted(rng.randrange(len(stream) + 1) for _ in range(rng.randint(0, 6)))
        _pump(stream, cuts, rng.choice([64, 1024, 1 << 20]))


@given(st.binary(max_size=512), st.lists(st.integers(0, 512), max_size=8), st.sampled_from([0, 16, 300, 1 << 20]))
@FUZZ
def test_hypothesis_frame_decoder(stream, cuts, max_frame):
    _pump(stream, sorted(cuts), max_frame)


@given(st.integers(-(2**15), 2**15 - 1), st.integers(-(2**15), 2**15 - 1), st.binary(max_size=200))
@FUZZ
def test_hypothesis_request_headers(key, version, rest):
    frame = struct.pack(">hhi", key, version, 7) + rest
    assert peek_request(frame) == (key, version, 7)
    attempt(decode_request, frame)


def test_broken_response_frames():
    rng = random.Random(f"{SEED}/responses")
    for key in KEYS:
        for version in versions(key)[-2:]:
            body = sample_bytes(key, version, "response")
            for header in (b"\x00\x00\x00\x01", b"\x00\x00\x00\x01\x00"):
                frame = header + body
                attempt(decode_response, key, version, frame)
                for broken in bit_flips(frame, rng, 10):
                    attempt(lambda b: decode_response(key, version, b), broken)
                for n in range(0, len(frame), 7):
                    attempt(lambda b: decode_response(key, version, b), frame[:n])


# -- no allocation for absurd declared lengths ------------------------------------------

ALLOC_LIMIT = 4 * 1024 * 1024


def _peak_of(fn, data, *args) -> int:
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    attempt(fn, data, *args)
    return tracemalloc.get_traced_memory()[1] - before


def test_declared_lengths_allocate_nothing():
    """Small inputs (< 1 KiB) whose length fields claim 2**31-1 bytes or
    elements, at every position, for the newest version of every request and
    response: the decoders give up without allocating for the claim."""
    worst = (0, None)
    tracemalloc.start()
    try:
        for key in KEYS:
            for kind in ("request", "response"):
                version = versions(key)[-1]
                data = sample_bytes(key, version, kind)
                assert len(data) < 1024
                cls = decoder(key, kind)
                for i in range(len(data)):
                    for rep, width in HUGE[0], HUGE[5]:  # int32 and varint 2**31-1
                        peak = _peak_of(cls.decode, data[:i] + rep + data[i + width :], version)
                        worst = max(worst, (peak, (key, kind, version, i, rep.hex())))
        frame = REQUEST_FRAMES[0][4:]
        for i in range(len(frame)):
            peak = _peak_of(decode_request, frame[:i] + b"\x7f\xff\xff\xff" + frame[i + 4 :])
            worst = max(worst, (peak, ("frame", i)))
        dec = FrameDecoder(max_frame_size=2**31 - 1)  # even where the limit allows it
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        dec.feed(b"\x7f\xff\xff\xff" + b"x" * 1000)
        assert dec.next_frame() is None
        worst = max(worst, (tracemalloc.get_traced_memory()[1] - before, "FrameDecoder"))
    finally:
        tracemalloc.stop()
    assert worst[0] < ALLOC_LIMIT, worst


def test_default_frame_limit_refuses_a_2gib_frame():
    dec = FrameDecoder()
    dec.feed(b"\x7f\xff\xff\xff")
    with pytest.raises(FrameTooLargeError):
        dec.next_frame()


# -- record batches ------------------------------------------------------------------------

records = pytest.importorskip("pybroker.protocol.records")
from pybroker.protocol.compression import Compression  # noqa: E402

MAX_RECORDS_SIZE = 1 << 20


def _batches() -> list[bytes]:
    rng = random.Random(f"{SEED}/batches")
    out = []
    for codec in Compression:
        recs = [
            records.NewRecord(b"k%d" % i if i % 3 else None, bytes(rng.getrandbits(8) for _ in range(i * 7)) or None,
                              [("h%d" % j, b"v" * j if j else None) for j in range(i % 3)], 1_700_000_000_000 + i)
            for i in range(5)
        ]
        out.append(records.build_batch(recs, base_offset=1000, compression=codec, producer_id=9,
                                       producer_epoch=1, base_sequence=3))
    out.append(records.build_control_batch(producer_id=9, producer_epoch=1, commit=True, coordinator_epoch=4,
                                           timestamp=1_700_000_000_000))
    out.append(records.build_batch([], base_offset=5, last_offset_delta=3))
    return out


BATCHES = _batches()


def _read_blob(blob):
    """Everything a broker or a consumer does with a records blob."""
    for split in (records.iter_batches, lambda b: records.split_batches(b)[0]):
        try:
            batches = list(split(blob))
        except ProtocolError:
            continue
        for batch in batches:
            for step in (batch.validate, lambda: batch.compression, lambda: batch.last_sequence,
                         lambda: list(batch.records(MAX_RECORDS_SIZE))):
                try:
                    step()
                except ProtocolError:
                    pass
            for rec in _safe_records(batch):
                if batch.is_control:
                    try:
                        records.control_type(rec)
                        records.read_end_txn_marker(rec)
                    except ProtocolError:
                        pass


def _safe_records(batch):
    try:
        return list(batch.records(MAX_RECORDS_SIZE))
    except ProtocolError:
        return []


def test_valid_batches_read_back():
    for blob in BATCHES:
        batch = records.RecordBatch(blob)
        batch.validate()
        assert len(list(batch.records(MAX_RECORDS_SIZE))) == batch.record_count
    blob = b"".join(BATCHES)
    assert [b.base_offset for b in records.iter_batches(blob)] == [1000] * len(Compression) + [0, 5]


@pytest.mark.parametrize("index", range(len(BATCHES)), ids=[f"batch{i}" for i in range(len(BATCHES))])
def test_broken_record_batches(index):
    rng = random.Random(f"{SEED}/batch/{index}")
    blob = BATCHES[index]
    assert list(records.iter_batches(b"")) == []
    for n in range(1, len(blob)):
        attempt(_read_blob, blob[:n])
        with pytest.raises(ProtocolError):  # a produced blob must hold whole batches
            list(records.iter_batches(blob[:n]))
    for broken in huge_lengths(blob):
        attempt(_read_blob, broken)
    for broken in bit_flips(blob, rng, 300):
        attempt(_read_blob, broken)
    for _ in range(100):  # everything after the CRC field is covered by it
        flipped = bytearray(blob)
        flipped[rng.randrange(21, len(blob))] ^= 1 << rng.randrange(8)
        with pytest.raises(ProtocolError):
            records.RecordBatch(flipped).validate()


def _restamp(raw: bytearray) -> bytearray:
    """Recompute the CRC so the mutation reaches the record parser past validate()."""
    import crc32c

    struct.pack_into(">I", raw, 17, crc32c.crc32c(memoryview(raw)[21:]))
    return raw


def test_broken_records_behind_a_good_crc():
    rng = random.Random(f"{SEED}/restamped")
    for blob in BATCHES:
        for i in range(61, len(blob)):
            for rep, width in HUGE:
                raw = bytearray(blob[:i] + rep + blob[i + width :])
                struct.pack_into(">i", raw, 8, len(raw) - 12)
                attempt(_read_blob, bytes(_restamp(raw)))
        for broken in bit_flips(blob[61:], rng, 100):
            raw = bytearray(blob[:61] + broken)
            attempt(_read_blob, bytes(_restamp(raw)))


@given(st.binary(max_size=300))
@FUZZ
def test_hypothesis_record_blobs(blob):
    attempt(_read_blob, blob)


@given(st.sampled_from(range(len(BATCHES))), st.lists(st.tuples(st.integers(0, 400), st.binary(min_size=1, max_size=4)),
                                                       min_size=1, max_size=4))
@FUZZ
def test_hypothesis_edits_of_record_batches(index, edits):
    raw = bytearray(BATCHES[index])
    for pos, chunk in edits:
        pos = min(pos, len(raw))
        raw[pos : pos + len(chunk)] = chunk
    attempt(_read_blob, bytes(raw))
    if len(raw) >= 61:
        attempt(_read_blob, bytes(_restamp(raw)))


def test_records_inside_produce_requests():
    """Produce requests carrying real batches, broken, through decode_request
    and then the batch view, the way the produce path reads them."""
    from pybroker.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData

    rng = random.Random(f"{SEED}/produce")
    for version in (3, 8, 9, 11):
        produce = ProduceRequest(acks=-1, timeout_ms=1000, topic_data=[
            TopicProduceData(name="t", partition_data=[
                PartitionProduceData(index=i, records=b"".join(BATCHES[i : i + 2])) for i in range(3)])])
        frame = encode_request(produce, version, 1, "c")[4:]

        def produce_path(f):
            _, body = decode_request(f)
            for topic in body.topic_data:
                for part in topic.partition_data:
                    if part.records is not None:
                        _read_blob(part.records)

        assert attempt(produce_path, frame)
        for broken in bit_flips(frame, rng, 200):
            attempt(produce_path, broken)
        for n in range(0, len(frame), 3):
            assert not attempt(produce_path, frame[:n])


def test_record_lengths_allocate_nothing():
    """Batches (< 1 KiB) whose batch length or record lengths claim 2**31-1 or
    0xffffffff: split and read without allocating for the claim."""
    worst = (0, None)
    tracemalloc.start()
    try:
        for blob in BATCHES[:1] + BATCHES[-2:]:
            assert len(blob) < 1024
            for i in range(len(blob)):
                for rep, width in HUGE[0], HUGE[4], HUGE[5]:
                    raw = bytearray(blob[:i] + rep + blob[i + width :])
                    for candidate in (bytes(raw), bytes(_restamp(raw)) if len(raw) > 61 else b""):
                        peak = _peak_of(_read_blob, candidate)
                        worst = max(worst, (peak, (i, rep.hex())))
    finally:
        tracemalloc.stop()
    assert worst[0] < ALLOC_LIMIT, worst


@pytest.mark.parametrize("codec", [c for c in Compression if c is not Compression.NONE], ids=lambda c: c.name.lower())
def test_decompression_bomb_is_bounded(codec):
    """A batch of 64 MiB of zeros, compressed; reading it with a 1 MiB bound
    fails early instead of inflating it."""
    from pybroker.protocol.compression import compress

    body = compress(codec, bytes(64 << 20))
    raw = bytearray(records.build_batch([records.NewRecord(None, b"x")], compression=codec))
    raw[61:] = body
    struct.pack_into(">i", raw, 8, len(raw) - 12)
    batch = records.RecordBatch(_restamp(raw))
    batch.validate()
    tracemalloc.start()
    try:
        with pytest.raises(CompressionError, match="exceeds the limit"):
            list(batch.records(MAX_RECORDS_SIZE))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MAX_RECORDS_SIZE


def _snappy_batch(declared: int) -> bytes:
    """A snappy batch whose raw-snappy body is just a preamble declaring
    ``declared`` uncompressed bytes, and four bytes of data."""
    from pybroker.protocol.primitives import write_uvarint

    raw = bytearray(records.build_batch([records.NewRecord(None, b"x")], compression=Compression.SNAPPY))
    body = bytearray()
    write_uvarint(body, declared)
    raw[61:] = body + b"\x00\x00\x00\x00"
    struct.pack_into(">i", raw, 8, len(raw) - 12)
    return bytes(_restamp(raw))


def test_snappy_declared_length_with_a_limit_allocates_nothing():
    batch = records.RecordBatch(_snappy_batch(0xFFFFFFFF))
    batch.validate()
    tracemalloc.start()
    try:
        with pytest.raises(CompressionError, match="exceeds the limit"):
            list(batch.records(MAX_RECORDS_SIZE))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < ALLOC_LIMIT


def test_snappy_declared_length_without_a_limit_allocates_nothing():
    batch = records.RecordBatch(_snappy_batch(64 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(CompressionError):
            list(batch.records())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < ALLOC_LIMIT, f"peak {peak} bytes for a {len(batch.view)}-byte batch"


def test_decode_error_is_what_truncation_raises():
    data = sample_bytes(0, 9, "request")
    with pytest.raises(DecodeError):
        api_info(0).request.decode(data[:-1], 9)
