import importlib
import struct

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybroker.protocol.compression import Compression
from pybroker.protocol.errors import CompressionError, CorruptRecordError, EncodeError, ProtocolError
from pybroker.protocol.primitives import write_varint
from pybroker.protocol.records import (
    CREATE_TIME,
    LOG_APPEND_TIME,
    ControlType,
    EndTxnMarker,
    NewRecord,
    RecordBatch,
    UnsupportedMagicError,
    build_batch,
    build_control_batch,
    control_type,
    iter_batches,
    read_end_txn_marker,
    split_batches,
)

CODECS = list(Compression)
ids = lambda c: c.name.lower()  # noqa: E731


def sample_batch(**kwargs) -> bytes:
    records = [
        NewRecord(b"k1", b"v1", [("h", b"x")], 1_000),
        NewRecord(None, b"v2", [], 1_007),
        NewRecord(b"k3", None, [("a", None), ("b", b"")], 1_003),
    ]
    options = dict(
        base_offset=500, producer_id=77, producer_epoch=3, base_sequence=40,
        partition_leader_epoch=9,
    )
    options.update(kwargs)
    return build_batch(records, **options)


def be(fmt: str, data, at: int):
    return struct.unpack_from(">" + fmt, data, at)[0]


# -- header ------------------------------------------------------------------------


def test_header_fields_at_kafkas_offsets():
    raw = sample_batch(is_transactional=True)
    batch = RecordBatch(raw)
    assert batch.base_offset == be("q", raw, 0) == 500
    assert batch.batch_length == be("i", raw, 8) == len(raw) - 12
    assert batch.partition_leader_epoch == be("i", raw, 12) == 9
    assert batch.magic == raw[16] == 2
    assert batch.crc == be("I", raw, 17) == crc32c.crc32c(raw[21:])
    assert batch.attributes == be("h", raw, 21) == 0x10
    assert batch.last_offset_delta == be("i", raw, 23) == 2
    assert batch.base_timestamp == be("q", raw, 27) == 1_000
    assert batch.max_timestamp == be("q", raw, 35) == 1_007
    assert batch.producer_id == be("q", raw, 43) == 77
    assert batch.producer_epoch == be("h", raw, 51) == 3
    assert batch.base_sequence == be("i", raw, 53) == 40
    assert batch.record_count == be("i", raw, 57) == 3
    assert batch.last_offset == 502 and batch.next_offset == 503
    assert batch.last_sequence == 42
    assert batch.size_in_bytes == len(raw)
    assert batch.compression is Compression.NONE
    assert batch.timestamp_type == CREATE_TIME
    assert batch.is_transactional and not batch.is_control and not batch.has_delete_horizon
    batch.validate()


def test_attribute_bits():
    batch = RecordBatch(sample_batch(
        compression=Compression.ZSTD, timestamp_type=LOG_APPEND_TIME, is_control=True,
        has_delete_horizon=True,
    ))
    assert batch.attributes == 4 | 0x08 | 0x20 | 0x40
    assert batch.compression is Compression.ZSTD
    assert batch.timestamp_type == LOG_APPEND_TIME
    assert batch.is_control and batch.has_delete_horizon and not batch.is_transactional


@pytest.mark.parametrize(
    "base, delta, last",
    [(-1, 5, -1), (0, 0, 0), (10, 4, 14), (2**31 - 1, 0, 2**31 - 1), (2**31 - 1, 1, 0),
     (2**31 - 3, 5, 2)],
)
def test_last_sequence_wraps_like_kafka(base, delta, last):
    records = [NewRecord(b"k", b"v", (), 0, d) for d in sorted({0, delta})]
    batch = RecordBatch(build_batch(records, producer_id=1, producer_epoch=0, base_sequence=base))
    assert batch.last_sequence == last


def test_view_is_zero_copy():
    buf = bytearray(sample_batch())
    batch = RecordBatch(buf)
    assert batch.view.obj is buf and not batch.view.readonly
    assert RecordBatch(bytes(buf)).view.readonly


def test_legacy_magic_is_named():
    raw = bytearray(sample_batch())
    for magic in (0, 1, 3, 0xFF):
        raw[16] = magic
        with pytest.raises(UnsupportedMagicError, match="only magic 2") as info:
            RecordBatch(raw)
        assert info.value.magic == (magic if magic < 128 else magic - 256)
        assert isinstance(info.value, CorruptRecordError)


def test_short_buffers():
    raw = sample_batch()
    for size in (0, 10, 16, 17, 60):
        with pytest.raises(CorruptRecordError):
            RecordBatch(raw[:size])


# -- validation ----------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS, ids=ids)
def test_any_flipped_bit_after_the_crc_is_caught(codec):
    raw = sample_batch(compression=codec)
    RecordBatch(raw).validate()
    for position in range(21, len(raw)):
        for bit in range(8):
            broken = bytearray(raw)
            broken[position] ^= 1 << bit
            with pytest.raises(CorruptRecordError):
                RecordBatch(broken).validate()


def test_a_flipped_crc_is_caught():
    for position in range(17, 21):
        broken = bytearray(sample_batch())
        broken[position] ^= 0x10
        with pytest.raises(CorruptRecordError, match="CRC mismatch"):
            RecordBatch(broken).validate()


def test_fields_before_the_crc_are_not_covered():
    broken = bytearray(sample_batch())
    broken[3] ^= 0xFF  # base offset
    broken[13] ^= 0xFF  # partition leader epoch
    RecordBatch(broken).validate()


def test_length_mismatch():
    raw = sample_batch()
    with pytest.raises(CorruptRecordError, match="does not match"):
        RecordBatch(raw + b"\x00").validate()
    with pytest.raises(CorruptRecordError, match="does not match"):
        RecordBatch(raw[:-1]).validate()
    small = bytearray(raw)
    struct.pack_into(">i", small, 8, 48)
    with pytest.raises(CorruptRecordError, match="below the minimum"):
        RecordBatch(small).validate()


def with_crc(raw: bytearray) -> bytearray:
    struct.pack_into(">I", raw, 17, crc32c.crc32c(raw[21:]))
    return raw


def test_negative_count_and_unknown_codec():
    raw = bytearray(sample_batch())
    struct.pack_into(">i", raw, 57, -1)
    with pytest.raises(CorruptRecordError, match="negative record count"):
        RecordBatch(with_crc(raw)).validate()
    raw = bytearray(sample_batch())
    raw[22] |= 0x07
    batch = RecordBatch(with_crc(raw))
    with pytest.raises(CorruptRecordError, match="unknown compression codec 7"):
        batch.validate()
    with pytest.raises(CorruptRecordError):
        list(batch.records())


# -- patching --------------------------------------------------------------------------


def test_patching_offsets_and_epoch_keeps_crc():
    buf = bytearray(sample_batch())
    crc = RecordBatch(buf).crc
    batch = RecordBatch(memoryview(buf)[:])
    batch.set_base_offset(123_456_789_000)
    batch.set_partition_leader_epoch(42)
    assert be("q", buf, 0) == 123_456_789_000 and be("i", buf, 12) == 42  # written in place
    assert batch.base_offset == 123_456_789_000 and batch.partition_leader_epoch == 42
    assert batch.crc == crc
    batch.validate()
    assert [r.offset for r in batch.records()] == [123_456_789_000 + i for i in range(3)]


def test_max_timestamp_patch_recomputes_crc():
    buf = bytearray(sample_batch())
    batch = RecordBatch(buf)
    old_crc = batch.crc
    batch.set_max_timestamp(5_000)
    assert batch.max_timestamp == be("q", buf, 35) == 5_000
    assert batch.crc != old_crc
    batch.validate()
    assert batch.timestamp_type == CREATE_TIME


def test_log_append_time_stamps_every_record():
    buf = bytearray(sample_batch(compression=Compression.LZ4))
    batch = RecordBatch(buf)
    batch.set_log_append_time(9_999)
    batch.validate()
    assert batch.timestamp_type == LOG_APPEND_TIME and batch.compression is Compression.LZ4
    assert [r.timestamp for r in batch.records()] == [9_999] * 3
    batch.set_max_timestamp(1_007, CREATE_TIME)
    batch.validate()
    assert bytes(buf) == sample_batch(compression=Compression.LZ4)


def test_unchanged_timestamp_is_not_rewritten():
    raw = sample_batch()
    batch = RecordBatch(raw)  # read-only: any write would raise
    batch.set_max_timestamp(1_007)
    batch.set_max_timestamp(1_007, CREATE_TIME)


def test_read_only_batches_cannot_be_patched():
    batch = RecordBatch(sample_batch())
    for patch in (lambda: batch.set_base_offset(1), lambda: batch.set_partition_leader_epoch(1),
                  lambda: batch.set_log_append_time(1)):
        with pytest.raises(TypeError, match="read-only"):
            patch()


def test_out_of_range_patch():
    batch = RecordBatch(bytearray(sample_batch()))
    with pytest.raises(EncodeError):
        batch.set_partition_leader_epoch(2**31)
    with pytest.raises(EncodeError):
        batch.set_base_offset(2**63)
    batch.validate()


# -- splitting a records blob ------------------------------------------------------------


def two_batches() -> bytes:
    return sample_batch(base_offset=0) + sample_batch(base_offset=3, compression=Compression.GZIP)


def test_iter_batches_views_the_blob():
    blob = bytearray(two_batches())
    batches = list(iter_batches(blob))
    assert [b.base_offset for b in batches] == [0, 3]
    assert sum(b.size_in_bytes for b in batches) == len(blob)
    for batch in batches:
        assert batch.view.obj is blob
        batch.validate()
    batches[1].set_base_offset(10)
    assert RecordBatch(blob[len(sample_batch()):]).base_offset == 10
    assert list(iter_batches(b"")) == []


def test_every_truncation_is_caught_or_split_off():
    blob = two_batches()
    first = len(sample_batch())
    for size in range(len(blob) + 1):
        whole = [n for n in (first, len(blob)) if n <= size]
        if size in (0, first, len(blob)):
            assert len(list(iter_batches(blob[:size]))) == len(whole)
        else:
            with pytest.raises(CorruptRecordError, match="truncated"):
                list(iter_batches(blob[:size]))
        batches, trailing = split_batches(blob[:size])
        assert len(batches) == len(whole)
        assert trailing == size - (whole[-1] if whole else 0)


@pytest.mark.parametrize("length", [-1, -(2**31), 0, 48])
def test_impossible_lengths_are_errors_even_when_splitting(length):
    blob = bytearray(two_batches())
    struct.pack_into(">i", blob, len(sample_batch()) + 8, length)
    with pytest.raises(CorruptRecordError, match="below the minimum"):
        list(iter_batches(blob))
    with pytest.raises(CorruptRecordError, match="below the minimum"):
        split_batches(blob)


def test_huge_declared_length_allocates_nothing():
    blob = bytearray(sample_batch())
    struct.pack_into(">i", blob, 8, 2**31 - 1)
    with pytest.raises(CorruptRecordError, match="truncated"):
        list(iter_batches(blob))
    assert split_batches(blob) == ([], len(blob))


def test_legacy_message_in_blob():
    # A magic-1 message: offset, size 22+, crc, magic 1, attributes, timestamp, key, value.
    legacy = struct.pack(">qiIbbqii", 0, 22, 0, 1, 0, 0, -1, -1)
    with pytest.raises(UnsupportedMagicError):
        list(iter_batches(sample_batch() + legacy))


# -- records --------------------------------------------------------------------------------

keys = st.one_of(st.none(), st.just(b""), st.binary(max_size=40))
headers = st.lists(st.tuples(st.text(max_size=10), st.one_of(st.none(), st.binary(max_size=20))), max_size=4)
timestamps = st.one_of(st.none(), st.integers(-1, 2**41))
new_records = st.lists(st.tuples(keys, keys, headers, timestamps), min_size=1, max_size=20)


@pytest.mark.parametrize("codec", CODECS, ids=ids)
@given(records=new_records, base_offset=st.integers(0, 2**62), gaps=st.lists(st.integers(1, 5), max_size=20))
@settings(max_examples=40, deadline=None)
def test_build_then_read_round_trip(codec, records, base_offset, gaps):
    deltas, delta = [], 0
    for index in range(len(records)):
        deltas.append(delta)
        delta += gaps[index] if index < len(gaps) else 1
    raw = build_batch(
        [NewRecord(k, v, h, ts, d) for (k, v, h, ts), d in zip(records, deltas)],
        base_offset=base_offset, compression=codec,
    )
    [batch] = iter_batches(raw)
    batch.validate()
    assert batch.compression is codec
    assert batch.record_count == len(records)
    assert batch.last_offset == base_offset + deltas[-1]
    first_ts = records[0][3] if records[0][3] is not None else -1
    expected_ts = [first_ts if ts is None else ts for _, _, _, ts in records]
    assert batch.base_timestamp == first_ts
    assert batch.max_timestamp == max(expected_ts)
    got = list(batch.records())
    assert [(r.key, r.value, r.headers) for r in got] == [(k, v, h) for k, v, h, _ in records]
    assert [r.offset for r in got] == [base_offset + d for d in deltas]
    assert [r.timestamp for r in got] == expected_ts


def test_plain_tuples_build_too():
    raw = build_batch([(b"k", b"v"), (None, b"w", [("h", b"1")], 5)], base_timestamp=3)
    got = list(RecordBatch(raw).records())
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in got] == [
        (0, 3, b"k", b"v", []), (1, 5, None, b"w", [("h", b"1")])]


def test_empty_batch_keeps_its_offset_range():
    raw = build_batch([], base_offset=10, last_offset_delta=4, producer_id=5, producer_epoch=0,
                      base_sequence=100, max_timestamp=77)
    batch = RecordBatch(raw)
    batch.validate()
    assert (batch.record_count, batch.last_offset, batch.last_sequence) == (0, 14, 104)
    assert batch.base_timestamp == -1 and batch.max_timestamp == 77
    assert list(batch.records()) == []


def test_build_rejects_bad_input():
    with pytest.raises(EncodeError, match="does not increase"):
        build_batch([NewRecord(b"a", offset_delta=2), NewRecord(b"b", offset_delta=2)])
    with pytest.raises(EncodeError):
        build_batch([NewRecord("text key")])
    with pytest.raises(EncodeError):
        build_batch([NewRecord(b"k", headers=[(None, b"v")])])
    with pytest.raises(EncodeError):
        build_batch([NewRecord(b"k")], producer_epoch=2**15)
    with pytest.raises(ProtocolError):
        build_batch([NewRecord(b"k")], compression=6)


def test_records_max_size_bounds_decompression():
    raw = build_batch([NewRecord(b"k", bytes(100_000))], compression=Compression.ZSTD)
    assert len(list(RecordBatch(raw).records(max_size=200_000))) == 1
    with pytest.raises(CompressionError, match="exceeds"):
        RecordBatch(raw).records(max_size=50_000)


def encode_record(fields: bytes, declared: int | None = None) -> bytes:
    out = bytearray()
    write_varint(out, len(fields) if declared is None else declared)
    return bytes(out) + fields


def forged_batch(body: bytes, count: int) -> bytes:
    """A batch with a valid header and CRC around hand-made record bytes."""
    raw = bytearray(build_batch([NewRecord(b"k", b"v")]))
    del raw[61:]
    raw += body
    struct.pack_into(">i", raw, 8, len(raw) - 12)
    struct.pack_into(">i", raw, 57, count)
    return bytes(with_crc(raw))


GOOD_FIELDS = b"\x00\x00\x00\x02k\x02v\x00"  # attrs, ts delta 0, offset delta 0, key "k", value "v", no headers


@pytest.mark.parametrize(
    "body, count, message",
    [
        (encode_record(GOOD_FIELDS), 2, "record 1"),  # fewer records than declared
        (encode_record(GOOD_FIELDS) * 2, 1, "bytes follow the last"),  # more
        (encode_record(GOOD_FIELDS, declared=200), 1, "declares 200 bytes"),
        (encode_record(GOOD_FIELDS, declared=-3), 1, "declares -3 bytes"),
        (encode_record(GOOD_FIELDS + b"\x00"), 1, "end 1 bytes early"),
        (encode_record(GOOD_FIELDS[:-2]), 1, "record 0"),
        (encode_record(b"\x00\x00\x00\x7fk\x02v\x00"), 1, "field of -64 bytes"),  # key length -64
        (encode_record(b"\x00\x00\x00\x0ak\x02v\x00"), 1, "field of 5 bytes"),  # key past the record
        (encode_record(b"\x00\x00\x00\x02k\x02v\x02"), 1, "header count 1 with 0"),
        (encode_record(b"\x00\x00\x00\x02k\x02v\x01"), 1, "header count -1"),
        (encode_record(b"\x00\x00\x00\x02k\x02v\x02\x01\x00"), 1, "header key of -1"),
        (encode_record(b"\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"), 1, "record 0"),  # endless varlong
        (encode_record(b""), 1, "record 0"),
    ],
)
def test_corrupt_records_name_the_problem(body, count, message):
    batch = RecordBatch(forged_batch(body, count))
    batch.validate()  # the header and CRC are fine: only records() can tell
    with pytest.raises(CorruptRecordError, match=message):
        list(batch.records())


def test_header_keys_that_are_not_utf8_read_and_write_back_as_the_same_bytes():
    # Kafka takes any bytes as a header key (librdkafka lets clients send them).
    body = encode_record(b"\x00\x00\x00\x02k\x02v\x02\x04\xff\xfe\x02x")
    (rec,) = RecordBatch(forged_batch(body, 1)).records()
    assert rec.headers[0][1] == b"x" and rec.headers[0][0].encode("utf-8", "surrogateescape") == b"\xff\xfe"
    rebuilt = build_batch([NewRecord(rec.key, rec.value, rec.headers, rec.timestamp)])
    assert rebuilt[61:] == body


@given(blob=st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_fuzzed_blobs_raise_only_protocol_errors(blob):
    try:
        batches, _ = split_batches(blob)
        for batch in batches:
            list(batch.records(max_size=1 << 20))
        for batch in iter_batches(blob):
            batch.validate()
    except ProtocolError:
        pass


@pytest.mark.parametrize("codec", CODECS, ids=ids)
@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_fuzzed_record_bytes_raise_only_protocol_errors(codec, data):
    raw = bytearray(sample_batch(compression=codec))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(61, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    batch = RecordBatch(with_crc(raw))
    batch.validate()
    try:
        list(batch.records(max_size=1 << 20))
    except ProtocolError:
        pass


# -- control batches ----------------------------------------------------------------------


@pytest.mark.parametrize("commit", [True, False])
def test_control_batch_round_trip(commit):
    raw = build_control_batch(
        producer_id=1234, producer_epoch=5, commit=commit, coordinator_epoch=17,
        timestamp=1_700_000_000_000, base_offset=88, partition_leader_epoch=2,
    )
    batch = RecordBatch(raw)
    batch.validate()
    assert batch.is_control and batch.is_transactional
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (1234, 5, -1)
    assert (batch.base_offset, batch.record_count, batch.partition_leader_epoch) == (88, 1, 2)
    assert batch.compression is Compression.NONE and batch.timestamp_type == CREATE_TIME
    assert batch.base_timestamp == batch.max_timestamp == 1_700_000_000_000
    [record] = batch.records()
    assert record.offset == 88 and record.headers == []
    assert record.key == struct.pack(">hh", 0, 1 if commit else 0)
    assert record.value == struct.pack(">hi", 0, 17)
    assert control_type(record) == (ControlType.COMMIT if commit else ControlType.ABORT)
    assert read_end_txn_marker(record) == EndTxnMarker(commit, 17)


def test_control_record_readers_reject_bad_records():
    [record] = RecordBatch(build_control_batch(1, 0, True, 3, 0)).records()
    with pytest.raises(CorruptRecordError, match="need 4"):
        control_type(record.__class__(0, 0, b"\x00\x00", None, []))
    with pytest.raises(CorruptRecordError, match="version -1"):
        control_type(record.__class__(0, 0, b"\xff\xff\x00\x01", None, []))
    with pytest.raises(CorruptRecordError, match="not a transaction marker"):
        read_end_txn_marker(record.__class__(0, 0, b"\x00\x00\x00\x02", record.value, []))
    with pytest.raises(CorruptRecordError, match="need 6"):
        read_end_txn_marker(record.__class__(0, 0, record.key, b"\x00\x00", []))
    # Newer versions may only append fields: the known prefix still reads.
    newer = record.__class__(0, 0, b"\x00\x01\x00\x00extra", b"\x00\x01\x00\x00\x00\x09more", [])
    assert read_end_txn_marker(newer) == EndTxnMarker(False, 9)


def test_kafka_python_reads_our_control_batch():
    default_records = importlib.import_module("kafka.record.default_records")
    theirs = default_records.DefaultRecordBatch(bytearray(build_control_batch(7, 1, False, 4, 1000)))
    assert theirs.is_control_batch and theirs.is_transactional and theirs.validate_crc()
    [marker] = list(theirs)
    assert marker.abort and marker.version == 0
