"""Kafka's checks of a produced batch (protocol/record_check.py): the error
code of every kind of lying batch, with every codec and both record
scanners; the header rewrite Kafka makes; bombs stopped within a bounded
window; and a window size that never changes a verdict."""

import gzip
import random
import struct
import time

import crc32c
import lz4.frame
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from pybroker.protocol import record_check
from pybroker.protocol.compression import Compression, compress
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.primitives import write_uvarint
from pybroker.protocol.record_check import BatchCheck, RecordsRejected, Rules, produced_batch
from pybroker.protocol.record_scan import IMPLEMENTATIONS
from pybroker.protocol.records import LOG_APPEND_TIME, NewRecord, build_batch

from .. import forged
from ..forged import fields, record, records_of, varint
from .test_record_scan import mutate

NOW = 1_800_000_000_000
CODECS = list(Compression)
ids = lambda c: c.name.lower()  # noqa: E731
INVALID_RECORD = ErrorCode.INVALID_RECORD
INVALID_TIMESTAMP = ErrorCode.INVALID_TIMESTAMP
CORRUPT_MESSAGE = ErrorCode.CORRUPT_MESSAGE


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def scan(request):
    return IMPLEMENTATIONS[request.param]


def rules(**overrides) -> Rules:
    settings_ = {
        "max_message_bytes": 1 << 20,
        "compact": False,
        "log_append_time": False,
        "before_max_ms": 2**63 - 1,
        "after_max_ms": 3_600_000,
        "now": NOW,
    }
    settings_.update(overrides)
    return Rules("t-0", **settings_)


def forge(records: bytes, count: int, codec=Compression.NONE, **header) -> bytes:
    header.setdefault("base_ts", NOW)
    return forged.forge(records, count, codec, **header)


def check(raw: bytes, scan=None, version=9, resumable=False, **overrides) -> BatchCheck:
    c = BatchCheck(produced_batch(bytearray(raw), version), rules(**overrides), scan)
    if resumable:
        while not c.run(time.perf_counter() + 0.0005):
            pass
    else:
        assert c.run()
    return c


def refused(raw: bytes, scan=None, **overrides) -> RecordsRejected:
    with pytest.raises(RecordsRejected) as info:
        check(raw, scan, **overrides)
    return info.value


# -- 1. the partition's records -----------------------------------------------------------


GOOD = forge(records_of(fields()), 1)


@pytest.mark.parametrize(
    "records, code",
    [
        pytest.param(None, INVALID_RECORD, id="none"),
        pytest.param(b"", INVALID_RECORD, id="empty"),
        pytest.param(GOOD[:11], INVALID_RECORD, id="shorter-than-a-length"),
        pytest.param(GOOD[:16], INVALID_RECORD, id="cut-before-magic"),
        pytest.param(GOOD[:-1], INVALID_RECORD, id="truncated"),
        pytest.param(GOOD[:8] + struct.pack(">i", 13) + GOOD[12:], CORRUPT_MESSAGE, id="length-below-14"),
        pytest.param(GOOD[:16] + b"\x03" + GOOD[17:], CORRUPT_MESSAGE, id="magic-3"),
        pytest.param(GOOD[:16] + b"\xff" + GOOD[17:], CORRUPT_MESSAGE, id="magic-minus-1"),
        pytest.param(GOOD[:16] + b"\x00" + GOOD[17:], INVALID_RECORD, id="magic-0"),
        pytest.param(GOOD[:16] + b"\x01" + GOOD[17:], INVALID_RECORD, id="magic-1"),
        pytest.param(GOOD + GOOD, INVALID_RECORD, id="two-batches"),
        pytest.param(GOOD + GOOD[:16] + b"\x07", CORRUPT_MESSAGE, id="second-with-bad-magic"),
        pytest.param(GOOD + GOOD[:8] + struct.pack(">i", 5), CORRUPT_MESSAGE, id="second-with-length-5"),
    ],
)
def test_the_partitions_records(records, code):
    with pytest.raises(RecordsRejected) as info:
        produced_batch(records, 9)
    assert info.value.code == code


def test_legacy_messages_get_invalid_record():
    # A magic 0 and a magic 1 message as Kafka's LegacyRecord writes them.
    for magic in (0, 1):
        message = bytearray(struct.pack(">Ibb", 0, magic, 0) + (b"\x00" * 8 if magic else b"") + struct.pack(">ii", -1, 1) + b"v")
        struct.pack_into(">I", message, 0, crc32c.crc32c(bytes(message[4:])))
        blob = struct.pack(">qi", 0, len(message)) + bytes(message)
        with pytest.raises(RecordsRejected) as info:
            produced_batch(blob, 9)
        assert info.value.code == INVALID_RECORD
        assert f"magic {magic}" in info.value.message


def test_bytes_after_the_batch_that_make_no_batch_are_ignored():
    assert bytes(produced_batch(GOOD + GOOD[:13], 9)) == GOOD


def test_zstd_needs_produce_v7():
    raw = forge(records_of(fields()), 1, Compression.ZSTD)
    with pytest.raises(RecordsRejected) as info:
        produced_batch(raw, 6)
    assert info.value.code == ErrorCode.UNSUPPORTED_COMPRESSION_TYPE
    assert produced_batch(raw, 7)


# -- 2-3. the header --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, code, where",
    [
        pytest.param(forge(records_of(fields()), 1, base_offset=7), INVALID_RECORD, "base offset", id="base-offset"),
        pytest.param(forge(records_of(fields(value=b"x" * 2000)), 1), ErrorCode.MESSAGE_TOO_LARGE, "max.message.bytes",
                     id="too-large"),
        pytest.param(GOOD[:8] + struct.pack(">i", 30) + GOOD[12:42], CORRUPT_MESSAGE, "header", id="shorter-than-header"),
        pytest.param(GOOD[:-1] + bytes([GOOD[-1] ^ 1]), CORRUPT_MESSAGE, "CRC", id="crc"),
        pytest.param(forge(records_of(fields()), 1, last_delta=-1), INVALID_RECORD, "last offset delta", id="delta-minus-1"),
        pytest.param(forge(b"", 0), INVALID_RECORD, "last offset delta", id="count-0"),
        pytest.param(forge(records_of(fields()), 0, last_delta=0), INVALID_RECORD, "declares 0 records", id="count-0-span-1"),
        pytest.param(forge(records_of(fields()), 1, last_delta=2**31 - 2), INVALID_RECORD, "spans", id="huge-span"),
        pytest.param(forge(records_of(fields()), 1, attributes=0x20), INVALID_RECORD, "control", id="control"),
        pytest.param(forge(records_of(fields()), 1, producer_id=9), INVALID_RECORD, "sequence", id="pid-without-sequence"),
        pytest.param(forge(records_of(fields()), 1, attributes=0x06), INVALID_RECORD, "codec", id="codec-6"),
    ],
)
def test_header_checks(raw, code, where):
    rejection = refused(raw, max_message_bytes=1000)
    assert rejection.code == code
    assert where in rejection.message
    assert rejection.record_errors == []


def test_huge_record_count_with_matching_span_is_refused_by_the_records():
    # The batch that moved a partition's log end by 2**31 - 1.
    rejection = refused(forge(records_of(fields()), 2**31 - 1))
    assert rejection.code == INVALID_RECORD and "ends early" in rejection.message


# -- 4. the records --------------------------------------------------------------------------

LYING = [
    pytest.param(records_of(fields(offset=0)), 2, "ends early", id="too-few-records"),
    pytest.param(records_of(fields(offset=0), fields(offset=1)), 1, "bytes follow", id="too-many-records"),
    pytest.param(records_of(fields()) + b"\x00", 1, "bytes follow", id="trailing-byte"),
    pytest.param(record(fields(), length=-5), 1, "invalid record size -5", id="negative-length"),
    pytest.param(record(fields(), length=400), 1, "needs 402 bytes", id="length-past-body"),
    pytest.param(b"\xff\xff\xff\xff\xff\x01" + fields(), 1, "length is not a valid varint", id="overlong-varint"),
    pytest.param(record(b"\x00" + b"\xff" * 10 + b"\x01"), 1, "timestamp delta is not a valid varint", id="overlong-varlong"),
    pytest.param(record(fields(raw_key_len=varint(-2))), 1, "invalid key size -2", id="key-minus-2"),
    pytest.param(record(fields(raw_key_len=varint(2**31 - 1))), 1, "key of 2147483647 runs past", id="absurd-key"),
    pytest.param(record(fields()[:-3] + varint(2**30) + b"\x00"), 1, "value of 1073741824", id="absurd-value"),
    pytest.param(record(fields()[:-1] + varint(2**31 - 1)), 1, "header count of 2147483647", id="absurd-header-count"),
    pytest.param(record(fields()[:-1] + varint(-3)), 1, "invalid header count size -3", id="negative-header-count"),
    pytest.param(record(fields()[:-1] + varint(1) + varint(-9) + varint(0)), 1, "invalid header key size -9",
                 id="negative-header-key"),
    pytest.param(record(fields() + b"\x00\x00"), 1, "its fields take", id="fields-end-early"),
    pytest.param(records_of(fields(offset=0), fields(offset=5)), 2, "offset delta 5 where 1", id="offset-deltas"),
    pytest.param(record(b""), 1, "it is empty", id="empty-record"),
]


@pytest.mark.parametrize("codec", CODECS, ids=ids)
@pytest.mark.parametrize("body, count, message", LYING)
def test_lying_records_get_invalid_record(scan, codec, body, count, message):
    rejection = refused(forge(body, count, codec), scan)
    assert rejection.code == INVALID_RECORD
    assert message in rejection.message
    assert rejection.record_errors == []


@pytest.mark.parametrize("codec", CODECS, ids=ids)
def test_valid_batches_pass_and_report_their_max_timestamp(scan, codec):
    batch = [NewRecord(f"k{i}".encode(), b"v" * i, [("h", b"x")], NOW - 500 + 7 * i) for i in range(300)]
    c = check(build_batch(batch, compression=codec), scan, resumable=True)
    assert c.done and c.max_timestamp == NOW - 500 + 7 * 299


def recompressed(codec, body: bytes, count: int = 1) -> bytes:
    """A batch of ``count`` records whose (compressed) body is ``body`` as given."""
    return forge(body, count, codec, raw_body=True)


@pytest.mark.parametrize("codec", [c for c in CODECS if c], ids=ids)
def test_payloads_that_do_not_decompress(scan, codec):
    garbage = bytes(random.Random(codec).randrange(256) for _ in range(300))
    rejection = refused(recompressed(codec, garbage), scan)
    assert rejection.code == INVALID_RECORD and "cannot be decompressed" in rejection.message


BODY = records_of(fields())
MANY = records_of(*(fields(offset=i, value=bytes(range(256)) * 4) for i in range(100)))  # several lz4 blocks


@pytest.mark.parametrize(
    "codec, body, count",
    [
        pytest.param(Compression.GZIP, gzip.compress(BODY)[:-4], 1, id="gzip-truncated"),
        pytest.param(Compression.GZIP, gzip.compress(BODY[:4]) + gzip.compress(BODY[4:]), 1, id="gzip-two-members"),
        pytest.param(Compression.GZIP, gzip.compress(BODY) + b"\x00", 1, id="gzip-trailing"),
        pytest.param(Compression.ZSTD, zstandard.ZstdCompressor(write_checksum=True).compress(BODY)[:-4], 1, id="zstd-without-its-checksum"),
        pytest.param(Compression.ZSTD, zstandard.ZstdCompressor().compress(BODY[:4]) + zstandard.ZstdCompressor().compress(BODY[4:]), 1, id="zstd-two-frames"),
        pytest.param(Compression.LZ4, lz4.frame.compress(MANY, block_linked=True), 100, id="lz4-linked-blocks"),
        pytest.param(Compression.LZ4, lz4.frame.compress(BODY)[:-4], 1, id="lz4-without-end-mark"),
        pytest.param(Compression.LZ4, lz4.frame.compress(BODY, block_linked=False) + b"\x00", 1, id="lz4-trailing"),
        pytest.param(Compression.SNAPPY, compress(Compression.SNAPPY, BODY)[:-1], 1, id="snappy-truncated"),
    ],
)
def test_compressed_bodies_some_readers_would_read_differently(scan, codec, body, count):
    rejection = refused(recompressed(codec, body, count), scan)
    assert rejection.code == INVALID_RECORD


# -- per-record verdicts ---------------------------------------------------------------------


def test_record_timestamps_are_checked_one_by_one(scan):
    body = records_of(fields(ts=0, offset=0), fields(ts=-10_000, offset=1), fields(ts=9_000, offset=2))
    rejection = refused(forge(body, 3), scan, before_max_ms=5_000, after_max_ms=5_000)
    assert rejection.code == INVALID_TIMESTAMP
    assert [i for i, _ in rejection.record_errors] == [1, 2]
    assert str(NOW - 10_000) in rejection.record_errors[0][1]
    # The batch header's first and largest timestamps alone said nothing wrong.
    assert check(forge(records_of(fields(ts=0, offset=0), fields(ts=0, offset=1)), 2), scan,
                 before_max_ms=5_000, after_max_ms=5_000).done


def test_compacted_topics_need_a_key_on_every_record(scan):
    body = records_of(fields(offset=0), fields(offset=1, key=None), fields(offset=2, key=b""))
    rejection = refused(forge(body, 3), scan, compact=True)
    assert rejection.code == INVALID_RECORD
    assert rejection.record_errors == [(1, rejection.record_errors[0][1])]
    assert check(forge(body, 3), scan).done


def test_timestamp_errors_win_the_top_level_code(scan):
    body = records_of(fields(offset=0, key=None), fields(offset=1, ts=-10**7))
    rejection = refused(forge(body, 2), scan, compact=True, before_max_ms=1000)
    assert rejection.code == INVALID_TIMESTAMP
    assert [i for i, _ in rejection.record_errors] == [0, 1]


def test_log_append_time_topics_check_no_client_timestamp(scan):
    body = records_of(fields(ts=-(10**9), offset=0))
    assert check(forge(body, 1), scan, log_append_time=True, before_max_ms=1000).done


def test_producers_may_not_claim_log_append_time(scan):
    body = records_of(fields(offset=0), fields(offset=1))
    lat = forge(body, 2, attributes=0x08, max_ts=NOW)
    rejection = refused(lat, scan, log_append_time=True)
    assert rejection.code == INVALID_TIMESTAMP and [i for i, _ in rejection.record_errors] == [0, 1]
    # On a CreateTime topic the header's max timestamp is every record's:
    # -1 or out of range is refused, in range is taken as CreateTime.
    assert refused(forge(body, 2, attributes=0x08, max_ts=-1), scan).code == INVALID_TIMESTAMP
    assert refused(forge(body, 2, attributes=0x08, max_ts=NOW + 10**8), scan).code == INVALID_TIMESTAMP
    c = check(lat, scan)
    c.apply()
    assert c.batch.timestamp_type != LOG_APPEND_TIME and c.batch.max_timestamp == NOW
    assert c.batch.compute_crc() == c.batch.crc


@pytest.mark.parametrize("stated", [-1, NOW - 10**6, NOW + 10**6])
def test_max_timestamp_is_rewritten_from_the_records(scan, stated):
    # Some clients (sarama 1.22) leave it at -1; Kafka sets it from the records.
    body = records_of(fields(ts=5, offset=0), fields(ts=30, offset=1), fields(ts=-2, offset=2))
    c = check(forge(body, 3, max_ts=stated), scan)
    c.apply()
    assert c.batch.max_timestamp == NOW + 30
    assert c.batch.compute_crc() == c.batch.crc


def test_header_keys_need_not_be_utf8(scan):
    body = records_of(fields(headers=[(b"\xff\xfe", b"v")]))
    assert check(forge(body, 1), scan).done


# -- bounded decompression -------------------------------------------------------------------


def bomb(codec, size: int) -> bytes:
    zeros = bytes(size)
    if codec is Compression.ZSTD:
        return zstandard.ZstdCompressor(level=3).compress(zeros)
    if codec is Compression.LZ4:
        return lz4.frame.compress(zeros, block_linked=False)
    return compress(codec, zeros)


@pytest.mark.parametrize("codec", [c for c in CODECS if c], ids=ids)
def test_zeros_bombs_fail_at_their_first_record(codec):
    # Zeros read as empty records: refused after a few bytes, whatever follows.
    size = (1 << 30) if codec is Compression.ZSTD else (20 << 20)
    started = time.perf_counter()
    rejection = refused(recompressed(codec, bomb(codec, size)))
    assert rejection.code == INVALID_RECORD
    assert time.perf_counter() - started < 5


def one_record_of(value_size: int) -> bytes:
    body = b"\x00\x00\x00\x02k" + varint(value_size)
    return varint(len(body) + value_size + 1) + body, value_size


def test_a_well_formed_zstd_bomb_stops_at_the_cap():
    limit = 64 * 1024  # max.message.bytes: the cap is 1032 times that, ~66 MB
    prefix, size = one_record_of(70 << 20)
    body = zstandard.ZstdCompressor(level=3).compress(prefix + bytes(size) + b"\x00")
    assert len(body) < limit
    rejection = refused(recompressed(Compression.ZSTD, body), max_message_bytes=limit)
    assert rejection.code == ErrorCode.MESSAGE_TOO_LARGE
    # With a larger max.message.bytes the same record is taken: Kafka takes it.
    assert check(recompressed(Compression.ZSTD, body), max_message_bytes=1 << 20).done


@pytest.mark.parametrize("codec", [Compression.GZIP, Compression.LZ4, Compression.SNAPPY], ids=ids)
def test_other_codecs_at_their_best_ratio_stay_under_the_cap(codec):
    # What a batch just under max.message.bytes inflates to, at best.
    limit = 64 * 1024
    prefix, size = one_record_of({Compression.GZIP: 60 << 20, Compression.LZ4: 15 << 20, Compression.SNAPPY: 1 << 20}[codec])
    payload = prefix + bytes(size) + b"\x00"
    body = lz4.frame.compress(payload, block_linked=False) if codec is Compression.LZ4 else compress(codec, payload)
    assert len(body) < limit - 61
    assert check(recompressed(codec, body), max_message_bytes=limit).done


def test_snappy_claims_beyond_the_cap_are_refused_before_inflating():
    claim = bytearray()
    write_uvarint(claim, 100 << 20)
    rejection = refused(recompressed(Compression.SNAPPY, bytes(claim) + b"\x00" * 16), max_message_bytes=1 << 20)
    assert rejection.code == INVALID_RECORD and "claims" in rejection.message


def test_the_window_stays_bounded(monkeypatch):
    grown = []
    real = record_check._Window.fill

    def fill(self, want):
        result = real(self, want)
        grown.append(len(self.buf))
        return result

    monkeypatch.setattr(record_check._Window, "fill", fill)
    prefix, size = one_record_of(8 << 20)  # one record far larger than the window
    check(recompressed(Compression.ZSTD, zstandard.ZstdCompressor().compress(prefix + bytes(size) + b"\x00")))
    assert grown and max(grown) <= record_check.WINDOW_MAX


@pytest.mark.parametrize("codec", [c for c in CODECS if c], ids=ids)
@given(seed=st.integers(0, 2**32))
@settings(max_examples=40, deadline=None)
def test_a_tiny_window_changes_no_verdict(codec, seed):
    # Every record then streams through the large-record path, field by field.
    rnd = random.Random(seed)
    batch = [
        NewRecord(rnd.choice([None, b"k"]), b"v" * rnd.randrange(50), [("h", b"x")] * rnd.randrange(3), NOW + rnd.randrange(-9, 9))
        for _ in range(rnd.randrange(1, 6))
    ]
    raw = bytearray(build_batch(batch))
    body = bytearray(raw[61:])
    mutate(body, rnd)
    count = len(batch) + rnd.choice([-1, 0, 0, 1])
    raw = forge(bytes(body), max(count, 1), codec)
    verdicts = []
    for window in (None, 1):
        with pytest.MonkeyPatch.context() as mp:
            if window:
                mp.setattr(record_check, "WINDOW_MIN", 1)
                mp.setattr(record_check, "WINDOW", 8)
                mp.setattr(record_check, "WINDOW_MAX", 1)
            try:
                c = check(raw, compact=True, before_max_ms=5)
                verdicts.append(("ok", c.max_timestamp))
            except RecordsRejected as e:
                # The wording may differ: a record cut short by the end of
                # the stream is "ends early" to the window, but may show a
                # bad field first when it streams past field by field.
                verdicts.append((e.code, e.record_errors))
    assert verdicts[0] == verdicts[1]


def test_work_can_stop_and_go_on_later():
    batch = build_batch([NewRecord(b"k", bytes(1000), [], NOW)] * 5000, compression=Compression.ZSTD)
    c = BatchCheck(produced_batch(bytearray(batch), 9), rules(max_message_bytes=10 << 20))
    assert c.run(deadline=0.0) is False and not c.done
    assert c.run() is True and c.done and c.max_timestamp == NOW
