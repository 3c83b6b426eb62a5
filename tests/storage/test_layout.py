"""The files the storage writes, read back with nothing but ``struct``.

The parsers here know Kafka's formats, not our code: a ``.log`` is a run of
record batches (61-byte header, CRC-32C over everything after the CRC
field), an ``.index`` holds big-endian (int32 relative offset, int32
position) pairs, a ``.timeindex`` (int64 timestamp, int32 relative offset),
and every checkpoint is "0\\n<count>\\n" followed by that many lines. The
other storage tests use them to look at the disk without trusting the code
under test.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import crc32c

from pybroker.protocol.records import NewRecord, build_batch
from pybroker.storage.config import LogConfig
from pybroker.storage.manager import LogManager

HEADER = struct.Struct(">qiibIhiqqqhii")  # written out again on purpose, not imported
T0 = 1_700_000_000_000
STEM = re.compile(r"^(\d{20})\.(log|index|timeindex)$")


@dataclass(frozen=True)
class DiskBatch:
    position: int
    base_offset: int
    last_offset: int
    max_timestamp: int
    leader_epoch: int
    data: bytes


def parse_log(path: Path) -> tuple[list[DiskBatch], int]:
    """The whole, CRC-valid batches at the start of a .log file and the
    number of bytes after them that do not form one."""
    return parse_log_data(Path(path).read_bytes())


def parse_log_data(data: bytes) -> tuple[list[DiskBatch], int]:
    batches, pos = [], 0
    while pos + HEADER.size <= len(data):
        (base, length, epoch, magic, crc, _attrs, delta, _base_ts, max_ts, *_rest) = HEADER.unpack_from(data, pos)
        end = pos + 12 + length
        if magic != 2 or length < HEADER.size - 12 or end > len(data) or delta < 0:
            break
        if crc32c.crc32c(data[pos + 21 : end]) != crc:
            break
        batches.append(DiskBatch(pos, base, base + delta, max_ts, epoch, data[pos:end]))
        pos = end
    return batches, len(data) - pos


def parse_offset_index(path: Path) -> list[tuple[int, int]]:
    data = Path(path).read_bytes()
    assert len(data) % 8 == 0, f"{path}: {len(data)} bytes is not whole entries"
    return [struct.unpack_from(">ii", data, i) for i in range(0, len(data), 8)]


def parse_time_index(path: Path) -> list[tuple[int, int]]:
    data = Path(path).read_bytes()
    assert len(data) % 12 == 0, f"{path}: {len(data)} bytes is not whole entries"
    return [struct.unpack_from(">qi", data, i) for i in range(0, len(data), 12)]


def parse_checkpoint(path: Path, width: int) -> list[list[str]]:
    lines = Path(path).read_text().split("\n")
    assert lines[-1] == "", "a checkpoint ends with a newline"
    assert lines[0] == "0", "version 0"
    count = int(lines[1])
    entries = [line.split(" ") for line in lines[2:-1]]
    assert len(entries) == count
    assert all(len(e) == width for e in entries)
    return entries


def segment_bases(partition_dir: Path) -> list[int]:
    return sorted(int(p.name[:20]) for p in Path(partition_dir).glob("*.log"))


def log_batches(partition_dir: Path) -> list[DiskBatch]:
    """Every batch of a partition, in segment order; asserts that each
    segment file is whole batches and nothing else."""
    out = []
    for base in segment_bases(partition_dir):
        batches, rest = parse_log(Path(partition_dir) / f"{base:020d}.log")
        assert rest == 0, f"segment {base} has {rest} bytes that are not a batch"
        out += batches
    return out


def check_segment_files(partition_dir: Path, index_interval: int, exact_time_index: bool = True) -> None:
    """Kafka's layout of a closed partition directory: 20-digit names, every
    .log with its two indexes, offset-index entries where Kafka's rule puts
    them (after more than index.interval.bytes since the last entry: the
    batch's last offset and position), time-index entries the running
    maximum timestamp with the offset it first appeared at, plus the
    segment's maximum at the end once it has rolled.

    A truncation keeps time-index entries whose offset survives even when
    the batch that triggered them is gone (as Kafka does), so a log that
    was truncated is checked with ``exact_time_index=False``: every entry
    must then still name a batch holding that maximum, in increasing order."""
    partition_dir = Path(partition_dir)
    names = {p.name for p in partition_dir.iterdir()}
    bases = segment_bases(partition_dir)
    for name in names - {"leader-epoch-checkpoint"}:
        assert STEM.match(name), f"unexpected file {name}"
    for i, base in enumerate(bases):
        stem = f"{base:020d}"
        assert {f"{stem}.index", f"{stem}.timeindex"} <= names
        batches, rest = parse_log(partition_dir / f"{stem}.log")
        assert rest == 0
        assert all(b.base_offset >= base for b in batches)
        expected_offsets, expected_times = [], []
        since, max_ts, max_at = 0, -1, base
        for b in batches:
            if b.max_timestamp > max_ts:
                max_ts, max_at = b.max_timestamp, b.last_offset
            if since > index_interval:
                expected_offsets.append((b.last_offset - base, b.position))
                if not expected_times or max_ts > expected_times[-1][0]:
                    expected_times.append((max_ts, max_at - base))
                since = 0
            since += len(b.data)
        offsets = parse_offset_index(partition_dir / f"{stem}.index")
        times = parse_time_index(partition_dir / f"{stem}.timeindex")
        assert offsets == expected_offsets, f"offset index of segment {base}"
        rolled = i < len(bases) - 1
        if rolled and max_ts >= 0 and (not expected_times or max_ts > expected_times[-1][0]):
            expected_times.append((max_ts, max_at - base))
        if exact_time_index:
            assert times == expected_times, f"time index of segment {base}"
            continue
        holders = {}
        for b in batches:
            for off in range(b.base_offset, b.last_offset + 1):
                holders[off] = b
        for (ts, rel), (next_ts, next_rel) in zip(times, times[1:]):
            assert ts < next_ts and rel <= next_rel, f"time index of segment {base} out of order"
        for ts, rel in times:
            assert holders[base + rel].max_timestamp == ts, f"time index of segment {base}: {ts} at {base + rel}"


# -- tests ---------------------------------------------------------------------


def fill(tmp_path, config: LogConfig, batches: int = 60, epoch_every: int = 20):
    mgr = LogManager([tmp_path], lambda topic: config)
    log = mgr.create("orders", 3)
    sent = []
    for i in range(batches):
        raw = build_batch(
            [NewRecord(b"k%d" % i, bytes([i % 251]) * (50 + 37 * (i % 13)), (), T0 + 1000 * i + (i % 5) * 300)
             for _ in range(1 + i % 4)],
        )
        result = log.append(raw, leader_epoch=i // epoch_every, now=T0 + 1000 * i)
        sent.append((result, raw))
    log.set_high_watermark(log.log_end_offset - 3)
    log.delete_records(2)
    mgr.close()
    return sent


def test_file_names_are_20_digit_base_offsets(tmp_path):
    fill(tmp_path, LogConfig(segment_bytes=2000, index_interval_bytes=300))
    part = tmp_path / "orders-3"
    bases = segment_bases(part)
    assert len(bases) > 3
    for p in part.glob("*.log"):
        assert re.fullmatch(r"\d{20}\.log", p.name)
        assert int(p.name[:20]) == log_batches_of(p)[0].base_offset
    assert bases[0] == 0
    # Each later segment starts where the one before it ends.
    batches = log_batches(part)
    starts = {b.base_offset for b in batches}
    assert set(bases) <= starts
    for prev, nxt in zip(batches, batches[1:]):
        assert nxt.base_offset == prev.last_offset + 1


def log_batches_of(path):
    batches, _ = parse_log(path)
    return batches


def test_log_holds_the_batches_as_sent_with_offsets_and_epoch_patched(tmp_path):
    sent = fill(tmp_path, LogConfig(segment_bytes=2000, index_interval_bytes=300))
    batches = log_batches(tmp_path / "orders-3")
    assert len(batches) == len(sent)
    for disk, (result, raw) in zip(batches, sent):
        assert disk.base_offset == result.base_offset
        assert disk.last_offset == result.last_offset
        expected = bytearray(raw)
        struct.pack_into(">q", expected, 0, result.base_offset)
        struct.pack_into(">i", expected, 12, disk.leader_epoch)
        assert disk.data == bytes(expected)
    assert [b.leader_epoch for b in batches] == [i // 20 for i in range(len(sent))]


def test_index_entries_follow_kafkas_rule(tmp_path):
    for interval in (0, 300, 4096):
        d = tmp_path / str(interval)
        fill(d, LogConfig(segment_bytes=5000, index_interval_bytes=interval), batches=80)
        check_segment_files(d / "orders-3", interval)
        # A closed log's indexes are trimmed to their entries (no zero tail).
        for p in (d / "orders-3").glob("*.index"):
            assert all(rel > 0 for rel, _ in parse_offset_index(p))


def test_index_entries_resolve_to_batches(tmp_path):
    fill(tmp_path, LogConfig(segment_bytes=3000, index_interval_bytes=100), batches=80)
    part = tmp_path / "orders-3"
    seen = 0
    for base in segment_bases(part):
        by_pos = {b.position: b for b in log_batches_of(part / f"{base:020d}.log")}
        entries = parse_offset_index(part / f"{base:020d}.index")
        seen += len(entries)
        for rel, pos in entries:
            assert by_pos[pos].last_offset == base + rel
        for ts, rel in parse_time_index(part / f"{base:020d}.timeindex"):
            holder = [b for b in by_pos.values() if b.base_offset <= base + rel <= b.last_offset]
            assert holder and holder[0].max_timestamp == ts
    assert seen > 20


def test_checkpoint_files(tmp_path):
    fill(tmp_path, LogConfig(segment_bytes=2000), batches=30)
    mgr = LogManager([tmp_path], lambda topic: LogConfig(segment_bytes=2000, cleanup_policy=frozenset({"compact"})))
    mgr.create("a.b_c-d", 0)
    log = mgr.get("orders", 3)
    end = log.log_end_offset
    mgr.close()
    assert parse_checkpoint(tmp_path / "recovery-point-offset-checkpoint", 3) == [
        ["a.b_c-d", "0", "0"],
        ["orders", "3", str(end)],
    ]
    assert parse_checkpoint(tmp_path / "log-start-offset-checkpoint", 3) == [
        ["a.b_c-d", "0", "0"],
        ["orders", "3", "2"],
    ]
    assert parse_checkpoint(tmp_path / "replication-offset-checkpoint", 3) == [
        ["a.b_c-d", "0", "0"],
        ["orders", "3", str(end - 3)],
    ]
    # Only compacted partitions have a cleaner offset (here all of them, by config).
    assert parse_checkpoint(tmp_path / "cleaner-offset-checkpoint", 3) == [["a.b_c-d", "0", "0"], ["orders", "3", "2"]]
    assert (tmp_path / ".kafka_cleanshutdown").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["a.b_c-d-0", "orders-3"]


def test_leader_epoch_checkpoint(tmp_path):
    fill(tmp_path, LogConfig(segment_bytes=2000), batches=50, epoch_every=20)
    entries = parse_checkpoint(tmp_path / "orders-3" / "leader-epoch-checkpoint", 2)
    batches = log_batches(tmp_path / "orders-3")
    first_of_epoch = {}
    for b in batches:
        first_of_epoch.setdefault(b.leader_epoch, b.base_offset)
    # Epoch 0 started at offset 0, below the log start (2): it is moved up to it.
    first_of_epoch[0] = 2
    assert [(int(e), int(s)) for e, s in entries] == sorted(first_of_epoch.items())
