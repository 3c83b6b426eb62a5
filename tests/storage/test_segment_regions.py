"""Reads that find whole-batch boundaries from headers alone, as bytes or as
file regions to send from the file, and what happens to a region when its
segment is deleted or cut before it is sent."""

from __future__ import annotations

import os
import random

import pytest

from pybroker.protocol.record_batch import RecordBatch
from pybroker.protocol.records import NewRecord, build_batch
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog
from pybroker.storage.segment import BatchInfo, FileRegion, LogSegment, RegionGoneError

T0 = 1_700_000_000_000


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fill_segment(tmp_path, rng: random.Random, count: int, index_interval: int):
    """A segment of ``count`` batches of mixed sizes (tiny to tens of KiB),
    with offset gaps between some of them, as compaction leaves them."""
    seg = LogSegment(tmp_path, 0, index_bytes=1 << 20, index_interval=index_interval)
    model: list[BatchInfo] = []
    offset, position = 0, 0
    for _ in range(count):
        n = rng.choice([1, 1, 2, 5])
        size = rng.choice([10, 100, 1000, 5000, 30_000])
        raw = build_batch([NewRecord(b"k", rng.randbytes(size), (), T0 + i) for i in range(n)], base_offset=offset)
        info = BatchInfo(position, offset, offset + n - 1, len(raw), T0 + n - 1)
        seg.append(raw, [BatchInfo(0, offset, offset + n - 1, len(raw), T0 + n - 1)])
        model.append(info)
        position += len(raw)
        offset += n + rng.choice([0, 0, 0, 3])
    return seg, model


def expected(model: list[BatchInfo], offset: int, max_bytes: int, max_offset: int) -> tuple[int, int] | None:
    """(start, end) of what a read must return: the batch holding ``offset``
    whole, then whole batches while they fit in ``max_bytes`` and begin below
    ``max_offset`` (the rule the old in-memory walk implemented)."""
    first = next((b for b in model if b.last_offset >= offset), None)
    if first is None or first.base_offset >= max_offset:
        return None
    end = first.position + first.size
    cap = first.position + max(max_bytes, first.size)
    for b in model[model.index(first) + 1 :]:
        if b.base_offset >= max_offset or b.position + b.size > cap:
            break
        end = b.position + b.size
    return first.position, end


@pytest.mark.parametrize("seed", range(6))
def test_reads_match_a_walk_over_every_header(tmp_path, seed):
    rng = random.Random(seed)
    seg, model = fill_segment(tmp_path, rng, 150, index_interval=rng.choice([1, 100, 4096, 1 << 20]))
    whole = seg.path.read_bytes()
    last = model[-1].last_offset
    for _ in range(300):
        offset = rng.randint(0, last + 2)
        max_bytes = rng.choice([1, 50, 4096, 20_000, 100_000, 1 << 20, 1 << 30])
        max_offset = rng.choice([last + 1, last + 100, rng.randint(0, last + 1)])
        want = expected(model, offset, max_bytes, max_offset)
        got = seg.read(offset, max_bytes, max_offset)
        region = seg.read(offset, max_bytes, max_offset, as_region=True)
        if want is None:
            assert got is None and region is None
            continue
        start, end = want
        assert got[0].position == start and got[1] == whole[start:end]
        assert isinstance(region[1], FileRegion)
        assert (region[1].position, len(region[1])) == (start, end - start)
        assert region[1].read() == whole[start:end]
    seg.close()


def test_a_torn_tail_is_cut_on_load_and_never_read(tmp_path):
    """A clean start trusts the indexes but not a file that ends inside a
    batch (a write torn by a full disk): that segment is recovered."""
    rng = random.Random(1)
    seg, model = fill_segment(tmp_path, rng, 20, index_interval=100)
    seg.close()
    path = tmp_path / f"{0:020d}.log"
    with open(path, "ab") as f:
        f.write(build_batch([NewRecord(b"k", b"torn", (), T0)], base_offset=1000)[:40])
    seg = LogSegment(tmp_path, 0, index_bytes=1 << 20, index_interval=100)
    end = model[-1].position + model[-1].size
    assert seg.load() == 40
    assert seg.size == path.stat().st_size == end
    assert seg.next_offset == model[-1].last_offset + 1
    for as_region in (False, True):
        _, data = seg.read(0, 1 << 30, 1 << 40, as_region)
        assert len(data) == end
    seg.close()


def _log_with_segments(tmp_path, count: int = 6) -> PartitionLog:
    log = PartitionLog(tmp_path / "t-0", LogConfig(segment_bytes=3000))
    for i in range(count):
        log.append(build_batch([NewRecord(b"k", bytes([i]) * 1000, (), T0 + i)]))
    log.set_high_watermark(log.log_end_offset)
    return log


def test_a_region_outlives_its_deleted_segment(tmp_path):
    log = _log_with_segments(tmp_path)
    assert len(log.segments) >= 3
    before = open_fds()
    region = log.read(0, 1 << 20, as_region=True).data
    expected_bytes = region.read()
    log.delete_records(log.segments[-1].base_offset)  # every old segment goes
    assert log.segments[0].base_offset > 0
    assert not (tmp_path / "t-0" / f"{0:020d}.log").exists()
    assert region.read() == expected_bytes  # the inode lives while the region does
    assert RecordBatch(memoryview(expected_bytes)[: RecordBatch(expected_bytes).batch_length + 12]).base_offset == 0
    del region
    assert open_fds() <= before  # the last reference closed the file
    log.close()


def test_closing_the_log_leaves_no_descriptor_behind(tmp_path):
    before = open_fds()
    log = _log_with_segments(tmp_path)
    regions = [log.read(o, 1 << 20, as_region=True).data for o in range(3)]
    log.close()
    assert [len(r.read()) > 0 for r in regions] == [True] * 3
    del regions
    assert open_fds() == before


def test_a_region_of_a_cut_file_is_refused(tmp_path):
    log = _log_with_segments(tmp_path, count=2)
    region = log.read(1, 1 << 20, as_region=True).data
    log.set_high_watermark(1)
    log.truncate_to(1)
    with pytest.raises(RegionGoneError):
        region.read()
    # Even once the file has grown back past the region: other batches now
    # lie where the region was read.
    log.append(build_batch([NewRecord(b"k", b"z" * 3000, (), T0)]))
    with pytest.raises(RegionGoneError):
        region.fileno()
    log.close()
