"""A random-operation test of PartitionLog against an in-memory model.

The model is a list of segments, each a list of (offset range, stored
bytes, timestamps), plus the log start, the high watermark, the recovery
point, the leader-epoch entries and the last checkpoint. Every operation is
applied to both; after each one the log's ends, segment list and epochs must
equal the model's, every read must return exactly the bytes the model
predicts, and now and then the segment files themselves are compared with
the model byte for byte and parsed for Kafka's index layout. Operations:
appends (leader appends that get offsets, and replica appends that bring
their own, with gaps), reads, rolls, truncation, DeleteRecords, the high
watermark, retention by time and size under a controlled clock, flushes,
checkpoints, clean restarts through LogManager, and crashes (a copy of the
files taken while the log is open, its active segment torn at a random
byte) followed by an unclean restart.
"""

from __future__ import annotations

import random
import shutil
import struct
from bisect import bisect_right
from dataclasses import dataclass, field

import pytest

from pybroker.protocol.records import Compression, NewRecord, build_batch
from pybroker.storage.config import LogConfig
from pybroker.storage.log import OffsetOutOfRangeError
from pybroker.storage.manager import LogManager

from .test_layout import check_segment_files, parse_log, segment_bases

T0 = 1_700_000_000_000
TOPIC, PARTITION = "model", 0


@dataclass
class Batch:
    base: int
    last: int
    data: bytes
    timestamps: list[int]  # of the records, offsets base, base + 1, ...

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def max_ts(self) -> int:
        return max(self.timestamps)


@dataclass
class Segment:
    base: int
    batches: list[Batch] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(b.size for b in self.batches)

    @property
    def next_offset(self) -> int:
        return self.batches[-1].last + 1 if self.batches else self.base

    @property
    def max_ts(self) -> int:
        return max((b.max_ts for b in self.batches), default=-1)


class Epochs:
    """The leader-epoch rules the log relies on, written out again."""

    def __init__(self):
        self.entries: list[tuple[int, int]] = []

    def assign(self, epoch: int, start: int) -> None:
        if self.entries and epoch == self.entries[-1][0] and start >= self.entries[-1][1]:
            return
        while self.entries and (self.entries[-1][0] >= epoch or self.entries[-1][1] >= start):
            self.entries.pop()
        self.entries.append((epoch, start))

    def truncate_from_end(self, end: int) -> None:
        while self.entries and self.entries[-1][1] >= end:
            self.entries.pop()

    def truncate_from_start(self, start: int) -> None:
        keep = sum(1 for _, s in self.entries if s <= start)
        if keep:
            self.entries = [(self.entries[keep - 1][0], start)] + self.entries[keep:]


class Model:
    def __init__(self, config: LogConfig):
        self.config = config
        self.segments = [Segment(0)]
        self.start = 0
        self.hw = 0
        self.recovery_point = 0
        self.epochs = Epochs()
        self.checkpoint: dict[str, int] | None = None  # last values written by LogManager.checkpoint

    @property
    def end(self) -> int:
        return self.segments[-1].next_offset

    @property
    def active(self) -> Segment:
        return self.segments[-1]

    # -- appends -------------------------------------------------------------

    def append(self, batches: list[Batch]) -> None:
        size = sum(b.size for b in batches)
        max_ts = max(b.max_ts for b in batches)
        active = self.active
        cfg = self.config
        full = active.size and active.size + size > cfg.segment_bytes
        due = active.batches and active.batches[0].max_ts >= 0 and max_ts - active.batches[0].max_ts > cfg.segment_ms
        if full or due:
            self.roll(batches[0].base)
        self.active.batches += batches

    def roll(self, base: int) -> None:
        if not (self.active.size == 0 and self.active.base == base):
            self.segments.append(Segment(base))

    # -- the ends ------------------------------------------------------------

    def truncate_to(self, offset: int) -> None:
        if offset >= self.end:
            return
        offset = max(offset, self.start)
        while len(self.segments) > 1 and self.active.base >= offset:
            self.segments.pop()
        self.active.batches = [b for b in self.active.batches if b.last < offset]
        self.epochs.truncate_from_end(self.end)
        self.recovery_point = min(self.recovery_point, self.end)
        self.hw = min(self.hw, self.end)
        self.start = min(self.start, self.end)

    def truncate_fully(self, new_start: int) -> None:
        self.segments = [Segment(new_start)]
        self.start = self.hw = self.recovery_point = new_start
        self.epochs.entries = []

    def delete_records(self, offset: int) -> None:
        if offset > self.start:
            self.start = offset
            self.epochs.truncate_from_start(offset)
            self._delete_below_start()

    def _delete_below_start(self) -> list[int]:
        gone = []
        while len(self.segments) > 1 and self.segments[1].base <= self.start:
            gone.append(self._delete_oldest())
        return gone

    def _delete_oldest(self) -> int:
        seg = self.segments.pop(0)
        if self.segments[0].base > self.start:
            self.start = self.segments[0].base
            self.epochs.truncate_from_start(self.start)
        return seg.base

    def retention(self, now: int) -> list[int]:
        gone = self._delete_below_start()
        cfg = self.config
        total = sum(s.size for s in self.segments)
        while len(self.segments) > 1:
            seg = self.segments[0]
            if self.segments[1].base > self.hw:
                break
            too_old = cfg.retention_ms >= 0 and seg.size and now - seg.max_ts > cfg.retention_ms
            too_big = cfg.retention_bytes >= 0 and total - seg.size >= cfg.retention_bytes
            if not (too_old or too_big):
                break
            total -= seg.size
            gone.append(self._delete_oldest())
        return gone

    # -- reads ---------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, limit: int) -> tuple[bytes, int]:
        bases = [s.base for s in self.segments]
        for seg in self.segments[max(bisect_right(bases, offset) - 1, 0) :]:
            if seg.base >= limit:
                break
            found = [i for i, b in enumerate(seg.batches) if b.last >= offset]
            if not found or seg.batches[found[0]].base >= limit:
                continue
            first = seg.batches[found[0]]
            budget = max(max_bytes, first.size)
            out, total = [first.data], first.size
            for b in seg.batches[found[0] + 1 :]:
                if b.base >= limit or total + b.size > budget:
                    break
                out.append(b.data)
                total += b.size
            return b"".join(out), first.base
        return b"", offset

    def records(self):
        for seg in self.segments:
            for b in seg.batches:
                for i, ts in enumerate(b.timestamps):
                    yield b.base + i, ts

    def offset_for_timestamp(self, target: int):
        for offset, ts in self.records():
            if ts >= target and offset >= self.start:
                return ts, offset
        return None

    def max_timestamp(self):
        best = None
        for seg in self.segments:
            if seg.batches and (best is None or seg.max_ts > best.max_ts):
                best = seg
        if best is None:
            return -1, -1
        holder = next(b for b in best.batches if b.max_ts == best.max_ts)
        return best.max_ts, holder.base + holder.timestamps.index(best.max_ts)

    # -- restarts ------------------------------------------------------------

    def write_checkpoint(self) -> None:
        self.checkpoint = {"recovery": self.recovery_point, "start": self.start, "hw": self.hw}

    def reopen(self) -> None:
        """What opening the files does to the ends (clean or not)."""
        ck = self.checkpoint or {}
        self.start = min(max(ck.get("start", 0), self.segments[0].base), self.end)
        hw = ck.get("hw", self.end)
        self.hw = min(max(hw, self.start), self.end)
        self.recovery_point = min(ck.get("recovery", 0), self.end)
        self.epochs.truncate_from_end(self.end)
        self.epochs.truncate_from_start(self.start)


# -- the test ------------------------------------------------------------------------


CODECS = list(Compression)


class Run:
    def __init__(self, tmp_path, seed: int):
        self.rng = random.Random(seed)
        rng = self.rng
        self.config = LogConfig(
            segment_bytes=rng.choice([1500, 8000, 40_000]),
            segment_ms=rng.choice([60_000, 600_000]),
            segment_index_bytes=64 * 1024,
            index_interval_bytes=rng.choice([0, 200, 4096]),
            retention_ms=rng.choice([-1, 100_000, 300_000]),
            retention_bytes=rng.choice([-1, 20_000, 80_000]),
        )
        self.tmp_path = tmp_path
        self.generation = 0
        self.data_dir = tmp_path / "gen0"
        self.mgr = LogManager([self.data_dir], lambda topic: self.config)
        self.log = self.mgr.create(TOPIC, PARTITION)
        self.model = Model(self.config)
        self.clock = T0
        self.epoch = 0
        self.ops = 0

    # -- building batches ------------------------------------------------------

    def random_batch(self, base_offset: int = 0, epoch: int = -1) -> tuple[bytes, list[int]]:
        rng = self.rng
        n = rng.choice([1, 1, 2, 3, 5, 8, 20])
        records, timestamps = [], []
        for _ in range(n):
            if rng.random() < 0.02:
                value = rng.randbytes(rng.randint(100, 2000)) * rng.randint(5, 40)  # large, compressible
            else:
                value = rng.randbytes(rng.randint(0, 300)) if rng.random() < 0.9 else None
            key = rng.randbytes(rng.randint(1, 12)) if rng.random() < 0.7 else None
            headers = [("h", rng.randbytes(3))] if rng.random() < 0.2 else []
            ts = self.clock - rng.randint(0, 40_000) if rng.random() < 0.3 else self.clock + rng.randint(0, 500)
            records.append(NewRecord(key, value, headers, ts))
            timestamps.append(ts)
        raw = build_batch(
            records,
            base_offset=base_offset,
            compression=rng.choice(CODECS),
            partition_leader_epoch=epoch,
            producer_id=rng.choice([-1, 7]),
            producer_epoch=0,
            base_sequence=rng.randint(0, 100),
        )
        return raw, timestamps

    # -- operations ----------------------------------------------------------

    def op_append(self):
        rng, log, m = self.rng, self.log, self.model
        if rng.random() < 0.1:
            self.epoch += 1
        count = rng.choice([1, 1, 1, 2, 3])
        if rng.random() < 0.8:
            # Leader: the log assigns offsets and stamps the epoch.
            raws = [self.random_batch() for _ in range(count)]
            result = log.append(b"".join(r for r, _ in raws), leader_epoch=self.epoch, now=self.clock)
            offset, batches = m.end, []
            assert result.base_offset == offset
            for raw, timestamps in raws:
                stored = bytearray(raw)
                struct.pack_into(">q", stored, 0, offset)
                struct.pack_into(">i", stored, 12, self.epoch)
                batches.append(Batch(offset, offset + len(timestamps) - 1, bytes(stored), timestamps))
                offset += len(timestamps)
            assert result.last_offset == offset - 1
            m.append(batches)
            m.epochs.assign(self.epoch, batches[0].base)
        else:
            # Replica: offsets come with the batches, sometimes with gaps.
            offset, batches = m.end, []
            for _ in range(count):
                offset += rng.choice([0, 0, 0, 1, 7])
                raw, timestamps = self.random_batch(offset, self.epoch)
                batches.append(Batch(offset, offset + len(timestamps) - 1, raw, timestamps))
                offset += len(timestamps)
            log.append(b"".join(b.data for b in batches), assign_offsets=False, now=self.clock)
            m.append(batches)
            for b in batches:
                m.epochs.assign(self.epoch, b.base)

    def op_read(self):
        rng, log, m = self.rng, self.log, self.model
        offset = rng.randint(m.start, m.end)
        if rng.random() < 0.05:
            offset = rng.choice([m.start - 1, m.end + 1])
            if offset < 0:
                offset = m.end + 1
            with pytest.raises(OffsetOutOfRangeError):
                log.read(offset, 1000)
            return
        max_bytes = rng.choice([0, 1, rng.randint(0, 3 * self.config.segment_bytes), 1 << 20])
        choice = rng.random()
        if choice < 0.5:
            got, limit = log.read(offset, max_bytes), m.hw
        else:
            limit = m.end if choice < 0.8 else rng.randint(m.start, m.end)
            got = log.read(offset, max_bytes, max_offset=limit)
        data, first = m.read(offset, max_bytes, limit)
        assert bytes(got.data) == data, (offset, max_bytes, limit)
        if data:
            assert got.first_offset == first

    def op_set_hw(self):
        m = self.model
        value = self.rng.randint(m.start, m.end) if self.rng.random() < 0.6 else m.end
        self.log.set_high_watermark(value)
        m.hw = value

    def op_roll(self):
        self.log.roll()
        self.model.roll(self.model.end)

    def op_truncate(self):
        m, rng = self.model, self.rng
        offset = rng.randint(max(m.start - 5, 0), m.end + 2)
        if rng.random() < 0.4:
            # Batch and segment boundaries are where the edge cases are.
            offset = rng.choice([b.base for s in m.segments for b in s.batches] + [s.base for s in m.segments])
        self.log.truncate_to(offset)
        m.truncate_to(offset)

    def op_truncate_fully(self):
        new_start = self.model.end + self.rng.randint(0, 50)
        self.log.truncate_fully(new_start)
        self.model.truncate_fully(new_start)

    def op_delete_records(self):
        m = self.model
        if self.rng.random() < 0.1 and m.hw < m.end:
            with pytest.raises(OffsetOutOfRangeError):
                self.log.delete_records(m.hw + 1)
            return
        offset = self.rng.randint(m.start, m.hw)
        assert self.log.delete_records(offset) == max(offset, m.start)
        m.delete_records(offset)

    def op_retention(self):
        gone = self.log.delete_expired_segments(now=self.clock)
        assert gone == self.model.retention(self.clock)

    def op_flush(self):
        self.log.flush()
        self.model.recovery_point = self.model.end

    def op_checkpoint(self):
        self.mgr.checkpoint()
        self.model.write_checkpoint()

    def op_timestamps(self):
        m = self.model
        records = list(m.records())
        target = self.rng.choice([ts for _, ts in records] + [self.clock + 10**6, 0]) + self.rng.choice([-1, 0, 1])
        assert self.log.offset_for_timestamp(target) == m.offset_for_timestamp(target)
        assert self.log.max_timestamp() == m.max_timestamp()

    def op_restart_clean(self):
        self.mgr.close()
        self.model.recovery_point = self.model.end
        self.model.write_checkpoint()
        part = self.data_dir / f"{TOPIC}-{PARTITION}"
        self.check_files()
        check_segment_files(part, self.config.index_interval_bytes, exact_time_index=False)
        self.mgr = LogManager([self.data_dir], lambda topic: self.config)
        assert self.mgr.unclean_dirs == []
        self.log = self.mgr.get(TOPIC, PARTITION)
        self.model.reopen()

    def op_crash(self):
        """Copy the files of the open log (what a killed process leaves),
        tear the active segment at a random byte, restart uncleanly."""
        rng, m = self.rng, self.model
        self.generation += 1
        crashed = self.tmp_path / f"gen{self.generation}"
        shutil.copytree(self.data_dir, crashed)
        self.mgr.close()
        shutil.rmtree(self.data_dir)
        self.data_dir = crashed
        part = crashed / f"{TOPIC}-{PARTITION}"
        active = part / f"{m.active.base:020d}.log"
        if rng.random() < 0.7 and m.active.size:
            cut = rng.randint(max(m.active.size - 3000, 0), m.active.size)
            with open(active, "r+b") as f:
                f.truncate(cut)
                tail = rng.choice([b"", bytes(rng.randint(1, 4096)), rng.randbytes(rng.randint(1, 300))])
                f.seek(cut)
                f.write(tail)
            kept, end = [], 0
            for b in m.active.batches:
                end += b.size
                if end > cut:
                    break
                kept.append(b)
            m.active.batches = kept
        self.mgr = LogManager([crashed], lambda topic: self.config)
        assert self.mgr.unclean_dirs == [crashed]
        self.log = self.mgr.get(TOPIC, PARTITION)
        m.reopen()

    OPS = [
        (op_append, 40),
        (op_read, 20),
        (op_set_hw, 8),
        (op_roll, 2),
        (op_truncate, 3),
        (op_truncate_fully, 0.3),
        (op_delete_records, 3),
        (op_retention, 5),
        (op_flush, 3),
        (op_checkpoint, 3),
        (op_timestamps, 3),
        (op_restart_clean, 1),
        (op_crash, 1),
    ]

    # -- checks ----------------------------------------------------------------

    def check_state(self):
        log, m = self.log, self.model
        assert (log.log_start_offset, log.high_watermark, log.log_end_offset) == (m.start, m.hw, m.end)
        assert log.recovery_point == m.recovery_point
        assert [(s.base_offset, s.size) for s in log.segments] == [(s.base, s.size) for s in m.segments]
        assert log.epochs.entries == m.epochs.entries

    def check_files(self):
        part = self.data_dir / f"{TOPIC}-{PARTITION}"
        assert segment_bases(part) == [s.base for s in self.model.segments]
        for seg in self.model.segments:
            path = part / f"{seg.base:020d}.log"
            assert path.read_bytes() == b"".join(b.data for b in seg.batches), f"segment {seg.base}"
            batches, rest = parse_log(path)
            assert rest == 0 and len(batches) == len(seg.batches)

    def run(self, steps: int) -> dict[str, int]:
        names, weights = zip(*self.OPS)
        done: dict[str, int] = {}
        for step in range(steps):
            self.clock += self.rng.randint(0, 4000)
            op = self.rng.choices(names, weights)[0]
            op(self)
            done[op.__name__] = done.get(op.__name__, 0) + 1
            self.check_state()
            if step % 40 == 0:
                self.check_files()
        self.check_files()
        self.op_restart_clean()
        self.check_state()
        self.mgr.close()
        return done


@pytest.mark.parametrize("seed", range(10))
def test_log_against_model(tmp_path, seed):
    done = Run(tmp_path, seed).run(500)
    # The mix really happened.
    assert done["op_append"] > 150 and done["op_read"] > 60
    assert done["op_crash"] + done["op_restart_clean"] > 2
