"""PartitionLog.append_batches, the produce path's entry point: batches the
caller has already split and validated go to disk exactly as append() would
put the same bytes there."""

from __future__ import annotations

import pytest

from pybroker.protocol.errors import CorruptRecordError
from pybroker.protocol.record_batch import RecordBatch, iter_batches
from pybroker.protocol.records import Compression, NewRecord, build_batch
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog

from .test_layout import log_batches, parse_log

T0 = 1_700_000_000_000


def raw_batch(n: int, size: int = 30, codec=Compression.NONE) -> bytes:
    records = [NewRecord(b"k%d" % i, bytes([65 + i % 26]) * size, (), T0 + i) for i in range(n)]
    return build_batch(records, compression=codec)


def views(*raws: bytes) -> list[RecordBatch]:
    return [RecordBatch(memoryview(bytearray(raw))) for raw in raws]


@pytest.mark.parametrize("append_time", [False, True])
def test_same_bytes_and_results_as_append(tmp_path, append_time):
    extra = {"message_timestamp_type": "LogAppendTime"} if append_time else {}
    config = LogConfig(index_interval_bytes=100, **extra)
    by_bytes = PartitionLog(tmp_path / "a-0", config)
    by_views = PartitionLog(tmp_path / "b-0", config)
    raws = [raw_batch(n, codec=c) for n, c in [(3, Compression.NONE), (1, Compression.ZSTD), (40, Compression.NONE)]]
    for raw in raws * 4:
        expected = by_bytes.append(raw, leader_epoch=5, now=T0 + 50)
        got = by_views.append_batches(views(raw), leader_epoch=5, now=T0 + 50)
        assert got == expected
    # Several batches in one call, as append() takes them from one buffer.
    expected = by_bytes.append(b"".join(raws), leader_epoch=6, now=T0 + 60)
    assert by_views.append_batches(views(*raws), leader_epoch=6, now=T0 + 60) == expected
    assert [b.data for b in log_batches(by_views.directory)] == [b.data for b in log_batches(by_bytes.directory)]
    for suffix in (".index", ".timeindex"):
        a = (by_bytes.directory / f"{0:020d}{suffix}").read_bytes()
        b = (by_views.directory / f"{0:020d}{suffix}").read_bytes()
        assert a == b
    assert by_views.epochs.entries == by_bytes.epochs.entries == [(5, 0), (6, 4 * 44)]
    by_bytes.close()
    by_views.close()


def test_patches_the_callers_bytes_in_place(tmp_path):
    log = PartitionLog(tmp_path / "t-0", LogConfig())
    log.append(raw_batch(2))
    frame = bytearray(raw_batch(3))
    [batch] = iter_batches(memoryview(frame))
    result = log.append_batches([batch], leader_epoch=9, now=T0)
    assert result.base_offset == 2
    assert RecordBatch(frame).base_offset == 2 and RecordBatch(frame).partition_leader_epoch == 9
    assert parse_log(log.directory / f"{0:020d}.log")[0][-1].data == bytes(frame)
    log.close()


def test_a_negative_last_offset_delta_writes_nothing(tmp_path):
    log = PartitionLog(tmp_path / "t-0", LogConfig())
    good = views(raw_batch(2))[0]
    bad = bytearray(raw_batch(2))
    bad[23:27] = (-1).to_bytes(4, "big", signed=True)
    with pytest.raises(CorruptRecordError):
        log.append_batches([good, RecordBatch(memoryview(bad))])
    with pytest.raises(CorruptRecordError):
        log.append_batches([])
    assert log.log_end_offset == 0 and log.active.size == 0
    log.close()
