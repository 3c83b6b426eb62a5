"""The record scanner: each way a record can be unreadable, the per-record
verdicts, windows that end inside a record, and the C and Python versions
(of the scanner and of the zstd frame walk) agreeing on every input."""

import random

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from pybroker.protocol import compression, record_scan
from pybroker.protocol.record_scan import (
    ATTRIBUTES,
    BAD_TIMESTAMP,
    CHECK_TIMESTAMPS,
    DONE,
    ERR_LEFTOVER,
    ERR_LENGTH,
    ERR_NEGATIVE,
    ERR_OFFSET_DELTA,
    ERR_PAST_END,
    ERR_VARINT,
    ERROR,
    HEADER_COUNT,
    HEADER_KEY,
    HEADER_VALUE,
    KEY,
    LENGTH,
    NEED,
    NO_KEY,
    OFFSET_DELTA,
    REQUIRE_KEY,
    TIMESTAMP,
    VALUE,
    describe,
    field_detail,
)
from pybroker.protocol.records import NewRecord, build_batch

from ..forged import fields, record, varint

IMPLEMENTATIONS = record_scan.IMPLEMENTATIONS
BASE_TS = 1_000_000
ANY_TIME = (-(2**63), 2**63 - 1)


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def scan(request):
    return IMPLEMENTATIONS[request.param]


def both():
    if "c" not in IMPLEMENTATIONS:
        pytest.skip("the C scanner is not built here (python setup.py build_ext --inplace)")
    return IMPLEMENTATIONS["c"], IMPLEMENTATIONS["python"]


def run(scan, body: bytes, count: int, flags=0, ts_range=ANY_TIME, pos=0, end=None, index=0, max_ts=-1):
    errors = []
    result = scan(body, pos, len(body) if end is None else end, index, count, BASE_TS, *ts_range, flags, max_ts, errors)
    return result, errors


def test_well_formed_records(scan):
    body = b"".join(record(fields(ts=i * 3, offset=i, headers=[(b"h", b"x"), (b"n", None)])) for i in range(5))
    (status, pos, index, max_ts, _, _), errors = run(scan, body, 5, REQUIRE_KEY | CHECK_TIMESTAMPS)
    assert (status, pos, index, max_ts, errors) == (DONE, len(body), 5, BASE_TS + 12, [])


def test_a_batch_built_by_the_codec_scans_clean(scan):
    raw = build_batch([NewRecord(b"k", b"v" * i, [("h", b"1")], BASE_TS + i) for i in range(50)])
    (status, pos, index, max_ts, _, _), _ = run(scan, raw, 50, pos=61)
    assert (status, pos, index, max_ts) == (DONE, len(raw), 50, BASE_TS + 49)


BAD = [
    # (record bytes, kind, detail)
    pytest.param(record(fields(), length=-3), ERR_LENGTH, -3, id="negative-length"),
    pytest.param(b"\xff\xff\xff\xff\xff\x01" + fields(), ERR_VARINT, LENGTH, id="length-six-bytes"),
    pytest.param(b"\x80\x80\x80\x80\x10" + fields(), ERR_VARINT, LENGTH, id="length-past-32-bits"),
    pytest.param(record(b""), ERR_PAST_END, field_detail(ATTRIBUTES, 1), id="empty-record"),
    pytest.param(record(b"\x00" + b"\xff" * 10 + b"\x01"), ERR_VARINT, TIMESTAMP, id="timestamp-eleven-bytes"),
    pytest.param(record(b"\x00" + b"\xff" * 9 + b"\x02"), ERR_VARINT, TIMESTAMP, id="timestamp-past-64-bits"),
    pytest.param(record(b"\x00\x00"), ERR_VARINT, OFFSET_DELTA, id="cut-before-offset-delta"),
    pytest.param(record(fields(raw_key_len=varint(-2))), ERR_NEGATIVE, field_detail(KEY, -2), id="key-length-minus-2"),
    pytest.param(record(fields(raw_key_len=varint(400))), ERR_PAST_END, field_detail(KEY, 400), id="key-past-record"),
    pytest.param(
        record(fields(raw_key_len=b"\xff\xff\xff\xff\x0f")), ERR_NEGATIVE, field_detail(KEY, -(2**31)), id="key-min-int"
    ),
    pytest.param(record(fields()[:-3] + varint(-7) + b"\x00"), ERR_NEGATIVE, field_detail(VALUE, -7), id="value-negative"),
    pytest.param(record(fields()[:-3] + varint(90) + b"\x00"), ERR_PAST_END, field_detail(VALUE, 90), id="value-past-record"),
    pytest.param(record(fields()[:-1] + varint(-1)), ERR_NEGATIVE, field_detail(HEADER_COUNT, -1), id="header-count-negative"),
    pytest.param(record(fields()[:-1] + varint(50)), ERR_PAST_END, field_detail(HEADER_COUNT, 50), id="header-count-past"),
    pytest.param(record(fields()[:-1] + varint(1) + varint(-1) + varint(0)), ERR_NEGATIVE,
                 field_detail(HEADER_KEY, -1), id="header-key-negative"),
    pytest.param(record(fields()[:-1] + varint(1) + varint(1) + b"h" + varint(-5)), ERR_NEGATIVE,
                 field_detail(HEADER_VALUE, -5), id="header-value-negative"),
    pytest.param(record(fields()[:-1] + varint(1) + varint(1) + b"h" + varint(9) + b"x"), ERR_PAST_END,
                 field_detail(HEADER_VALUE, 9), id="header-value-past"),
    pytest.param(record(fields() + b"\x00\x00"), ERR_LEFTOVER, (len(fields()) + 2) * 2**32 + len(fields()),
                 id="bytes-left-in-record"),
    pytest.param(record(fields(offset=3)), ERR_OFFSET_DELTA, 3, id="offset-delta-3"),
    pytest.param(record(fields(offset=-1)), ERR_OFFSET_DELTA, -1, id="offset-delta-negative"),
]


@pytest.mark.parametrize("bad, kind, detail", BAD)
def test_unreadable_records_stop_the_scan_at_them(scan, bad, kind, detail):
    # The framing is checked before the offset delta, so the bad record's
    # delta of 0 in second place only matters to the offset-delta cases.
    good = record(fields())
    (status, pos, index, _, a, b), _ = run(scan, good + bad, 2)
    assert (status, pos, index, a, b) == (ERROR, len(good), 1, kind, detail)
    assert describe(a, b, index)


def test_offset_delta_must_count_up_from_zero(scan):
    body = record(fields(offset=0)) + record(fields(offset=2))
    (status, _, index, _, a, b), _ = run(scan, body, 2)
    assert (status, index, a, b) == (ERROR, 1, ERR_OFFSET_DELTA, 2)
    assert describe(a, b, index) == "offset delta 2 where 1 was expected"


def test_record_running_past_the_window_asks_for_more(scan):
    body = record(fields(offset=0)) + record(fields(offset=1, value=b"x" * 300))
    cut = len(record(fields())) + 10
    (status, pos, index, _, need, _), _ = run(scan, body, 2, end=cut)
    assert (status, pos, index, need) == (NEED, len(record(fields())), 1, len(body) - len(record(fields())))
    # ... and goes on from there once the rest is in
    (status, pos, index, _, _, _), _ = run(scan, body, 2, pos=pos, index=index)
    assert (status, pos, index) == (DONE, len(body), 2)


def test_length_prefix_cut_off_asks_for_more(scan):
    body = record(fields(value=b"x" * 200))  # a two-byte length
    (status, pos, index, _, need, _), _ = run(scan, body, 1, end=1)
    assert (status, pos, index, need) == (NEED, 0, 0, 0)


def test_count_reached_stops_before_the_rest(scan):
    body = record(fields()) + b"\xff\xff"
    (status, pos, index, _, _, _), _ = run(scan, body, 1)
    assert (status, pos, index) == (DONE, len(record(fields())), 1)


def test_verdicts_are_per_record_and_key_first(scan):
    body = (
        record(fields(ts=0, offset=0))
        + record(fields(ts=-900, offset=1))  # too old
        + record(fields(ts=0, offset=2, key=None))  # no key
        + record(fields(ts=5000, offset=3, key=None))  # no key and too new: the key is named
        + record(fields(ts=-BASE_TS - 1, offset=4))  # timestamp -1: not checked
    )
    lo, hi = BASE_TS - 100, BASE_TS + 100
    _, errors = run(scan, body, 5, REQUIRE_KEY | CHECK_TIMESTAMPS, (lo, hi))
    assert errors == [(1, BAD_TIMESTAMP, BASE_TS - 900), (2, NO_KEY, BASE_TS), (3, NO_KEY, BASE_TS + 5000)]
    _, errors = run(scan, body, 5, CHECK_TIMESTAMPS, (lo, hi))
    assert errors == [(1, BAD_TIMESTAMP, BASE_TS - 900), (3, BAD_TIMESTAMP, BASE_TS + 5000)]
    _, errors = run(scan, body, 5, 0, (lo, hi))
    assert errors == []


def test_timestamps_wrap_as_java_longs(scan):
    body = record(fields(ts=2**63 - 1))  # BASE_TS + that overflows
    _, errors = run(scan, body, 1, CHECK_TIMESTAMPS, (0, 2**63 - 1))
    assert errors == [(0, BAD_TIMESTAMP, BASE_TS + 2**63 - 1 - 2**64)]


def test_max_timestamp_ignores_values_below_the_start(scan):
    body = record(fields(ts=-BASE_TS - 50))
    (_, _, _, max_ts, _, _), _ = run(scan, body, 1)
    assert max_ts == -1


def test_arguments_outside_the_buffer_are_refused():
    for scan in IMPLEMENTATIONS.values():
        if scan is IMPLEMENTATIONS.get("c"):
            with pytest.raises(ValueError):
                scan(b"abc", 0, 10, 0, 1, 0, 0, 0, 0, -1, [])


# -- C and Python agree ------------------------------------------------------------------


def mutate(body: bytearray, rnd: random.Random) -> None:
    for _ in range(rnd.randrange(1, 4)):
        if not body:
            return
        kind = rnd.randrange(5)
        at = rnd.randrange(len(body))
        if kind == 0:
            body[at] ^= 1 << rnd.randrange(8)
        elif kind == 1:
            body[at] = rnd.choice([0x00, 0x01, 0x7F, 0x80, 0x81, 0xFF, rnd.randrange(256)])
        elif kind == 2:
            del body[at:]
        elif kind == 3:
            body[at:at] = bytes([rnd.choice([0x80, 0xFF, 0x01])] * rnd.randrange(1, 11))
        else:
            del body[at : at + rnd.randrange(1, 6)]


@given(seed=st.integers(0, 2**32), count_shift=st.integers(-1, 1), flags=st.integers(0, 3))
@settings(max_examples=600, deadline=None)
def test_c_and_python_scanners_agree(seed, count_shift, flags):
    c_scan, py_scan = both()
    rnd = random.Random(seed)
    records = [
        NewRecord(
            rnd.choice([None, b"k", b""]),
            rnd.choice([None, b"", b"v" * rnd.randrange(200)]),
            [(f"h{j}", rnd.choice([None, b"x"])) for j in range(rnd.randrange(3))],
            BASE_TS + rnd.randrange(-60, 60),
        )
        for _ in range(rnd.randrange(1, 8))
    ]
    body = bytearray(build_batch(records)[61:])
    mutate(body, rnd)
    count = len(records) + count_shift
    ts_range = (BASE_TS - 30, BASE_TS + 30)
    end = rnd.choice([len(body), rnd.randrange(len(body) + 1)])
    assert run(c_scan, bytes(body), count, flags, ts_range, end=end) == run(py_scan, bytes(body), count, flags, ts_range, end=end)


@given(seed=st.integers(0, 2**32))
@settings(max_examples=300, deadline=None)
def test_c_and_python_zstd_frame_walks_agree(seed):
    if compression.zstd_frame_size is compression.python_zstd_frame_size:
        pytest.skip("the C frame walk is not built here (python setup.py build_ext --inplace)")
    rnd = random.Random(seed)
    data = bytes(rnd.choice([b"a", b"ab" * 40, bytes(rnd.randrange(256) for _ in range(64))])) * rnd.randrange(1, 3000)
    frame = bytearray(zstandard.ZstdCompressor(level=rnd.randrange(1, 10), write_checksum=rnd.random() < 0.5).compress(data))
    whole = len(frame)
    assert compression.python_zstd_frame_size(bytes(frame)) == whole
    mutate(frame, rnd)
    assert compression.zstd_frame_size(bytes(frame)) == compression.python_zstd_frame_size(bytes(frame))
