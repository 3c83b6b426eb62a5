"""Crashes: torn and garbled segment files, lost and garbled indexes, and a
stop at any byte of an append, a roll, a checkpoint write or a compaction
swap. After each, the log must open, hold every batch that was completely
written before the damage byte for byte and nothing after it, and hand out
offsets that continue from the recovered end.

A crash is simulated by copying the files of a log that is still open (what
a killed process leaves: unflushed data in the page cache, preallocated
indexes untrimmed, no clean-shutdown marker), then damaging the copy. The
expected contents are worked out from the files as written, parsed with the
independent parsers of test_layout.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from pybroker.protocol.record_batch import split_batches
from pybroker.protocol.records import Compression, NewRecord, build_batch
from pybroker.storage.config import LogConfig
from pybroker.storage.manager import CLEAN_SHUTDOWN_FILE, LOG_START_FILE, RECOVERY_POINT_FILE, LogManager
from pybroker.storage.segment import BatchInfo

from .test_layout import DiskBatch, check_segment_files, parse_checkpoint, parse_log, parse_log_data, segment_bases

T0 = 1_700_000_000_000
TOPIC = "crash"
PART = f"{TOPIC}-0"
CONFIG = LogConfig(segment_bytes=4000, index_interval_bytes=300, segment_index_bytes=4096)


def config_for(topic: str) -> LogConfig:
    return CONFIG


def random_batch(rng: random.Random, i: int) -> bytes:
    records = [
        NewRecord(b"key-%d" % rng.randint(0, 20), rng.randbytes(rng.randint(0, 400)), (), T0 + 1000 * i + j)
        for j in range(rng.randint(1, 4))
    ]
    return build_batch(records, compression=rng.choice(list(Compression)))


def snapshot(src: Path, dst: Path) -> Path:
    """The files as a crash would leave them (the log is still open)."""
    shutil.copytree(src, dst)
    return dst


def open_unclean(data_dir: Path):
    assert not (data_dir / CLEAN_SHUTDOWN_FILE).exists()
    mgr = LogManager([data_dir], config_for)
    assert mgr.unclean_dirs == [data_dir]
    return mgr, mgr.get(TOPIC, 0)


def read_everything(log) -> list[tuple[int, bytes]]:
    """(base offset, bytes) of every batch the log serves, from its start."""
    out, offset = [], log.log_start_offset
    while offset < log.log_end_offset:
        got = log.read(offset, 1 << 20, max_offset=log.log_end_offset)
        if not got.data:
            break
        batches, rest = split_batches(bytes(got.data))
        assert rest == 0
        out += [(b.base_offset, bytes(b.view)) for b in batches]
        offset = batches[-1].next_offset
    return out


def log_end(segments: dict[int, list[DiskBatch]]) -> int:
    last = max(segments)
    return segments[last][-1].last_offset + 1 if segments[last] else last


def check_recovered(data_dir: Path, log, expected: dict[int, list[DiskBatch]]):
    """The recovered log holds exactly ``expected`` (segment base -> batches),
    serves it from its start, and takes new appends at the recovered end."""
    part = data_dir / PART
    assert segment_bases(part) == sorted(expected)
    for base, batches in expected.items():
        on_disk, rest = parse_log(part / f"{base:020d}.log")
        assert rest == 0, f"segment {base} kept {rest} bytes of a partial batch"
        assert [(b.base_offset, b.data) for b in on_disk] == [(b.base_offset, b.data) for b in batches]
    end = log_end(expected)
    assert log.log_end_offset == end
    assert log.log_start_offset <= log.high_watermark <= end
    assert log.recovery_point <= end
    # Served from the log start: the batch holding it and everything after.
    assert read_everything(log) == [
        (b.base_offset, b.data)
        for base in sorted(expected)
        for b in expected[base]
        if b.last_offset >= log.log_start_offset
    ]
    assert all(start < end for _, start in log.epochs.entries)
    # Offsets go on from the recovered end, never reusing one still in the log.
    result = log.append(build_batch([NewRecord(b"after", b"crash", (), T0 + 10**7)]), leader_epoch=99)
    assert result.base_offset == end
    assert log.read(end, 1000, max_offset=end + 1).first_offset == end
    return end


def close_and_check_layout(mgr, data_dir: Path, end: int):
    mgr.close()
    part = data_dir / PART
    check_segment_files(part, CONFIG.index_interval_bytes, exact_time_index=False)
    assert not [p for p in part.iterdir() if p.name.endswith((".cleaned", ".swap", ".deleted"))]
    again = LogManager([data_dir], config_for)
    assert again.unclean_dirs == []
    log = again.get(TOPIC, 0)
    assert log.log_end_offset == end + 1
    again.close()


# -- a crash image ----------------------------------------------------------------


@dataclass
class Image:
    path: Path
    segments: dict[int, list[DiskBatch]]  # base -> batches, as the crash left them
    recovery_point: int

    def trusted(self, base: int) -> bool:
        """Segments wholly below the recovery point are opened without a scan."""
        bases = sorted(self.segments)
        i = bases.index(base)
        return i + 1 < len(bases) and bases[i + 1] <= self.recovery_point


def build_image(tmp_path: Path, seed: int) -> Image:
    rng = random.Random(seed)
    live = tmp_path / "live"
    mgr = LogManager([live], config_for)
    log = mgr.create(TOPIC, 0)
    for i in range(90):
        log.append(random_batch(rng, i), leader_epoch=i // 30, now=T0 + 1000 * i)
        if i == 45:
            log.set_high_watermark(log.log_end_offset)
            log.delete_records(5)
            log.flush()
            mgr.checkpoint()
    log.set_high_watermark(log.log_end_offset - 1)
    image = snapshot(live, tmp_path / "image")
    mgr.close()
    part = image / PART
    segments = {}
    for base in segment_bases(part):
        batches, rest = parse_log(part / f"{base:020d}.log")
        assert rest == 0
        segments[base] = batches
    (rp,) = [int(e[2]) for e in parse_checkpoint(image / RECOVERY_POINT_FILE, 3)]
    assert 0 < rp < log_end(segments)
    assert len(segments) > 5
    return Image(image, segments, rp)


# -- random damage ------------------------------------------------------------------


def damage_log(rng: random.Random, path: Path, batches: list[DiskBatch]) -> tuple[int, bool]:
    """Damage a .log file from some byte on; returns (that byte, whether
    bytes that are not whole batches remain for recovery to cut)."""
    data = path.read_bytes()
    size = len(data)
    kind = rng.choice(["truncate", "truncate at a batch end", "garbage", "zeros", "garble"])
    if kind == "truncate":
        at = rng.randint(0, size)
        path.write_bytes(data[:at])
        damaged = at
    elif kind == "truncate at a batch end":
        at = rng.choice([0] + [b.position + len(b.data) for b in batches])
        path.write_bytes(data[:at])
        damaged = at
    elif kind == "garbage":
        at = size
        path.write_bytes(data + rng.randbytes(rng.randint(1, 5000)))
        damaged = size + 1
    elif kind == "zeros":
        at = rng.randint(0, size - 1)
        path.write_bytes(data[:at] + bytes(size - at))
        damaged = size
    else:
        at = rng.randint(0, size - 1)
        path.write_bytes(data[:at] + rng.randbytes(size - at))
        damaged = size
    kept = sum(len(b.data) for b in batches if b.position + len(b.data) <= at)
    return at, damaged > kept


def damage_index(rng: random.Random, path: Path, trusted: bool) -> None:
    kinds = ["delete", "zero-fill", "zeros appended", "torn"] + ([] if trusted else ["garble", "empty"])
    kind = rng.choice(kinds)
    data = path.read_bytes() if path.exists() else b""
    size = 12 if path.suffix == ".timeindex" else 8
    if kind == "delete":
        path.unlink(missing_ok=True)
    elif kind == "zero-fill":
        path.write_bytes(bytes(max(len(data), 2 * size)))
    elif kind == "zeros appended":  # a preallocated file never trimmed
        path.write_bytes(data + bytes(size * rng.randint(2, 64)))
    elif kind == "torn":
        path.write_bytes(data + bytes(rng.randint(1, size - 1)))
    elif kind == "garble":
        path.write_bytes(rng.randbytes(len(data) + size * rng.randint(0, 8)))
    else:
        path.write_bytes(b"")


@pytest.mark.parametrize("seed", range(3))
def test_random_damage(tmp_path, seed):
    image = build_image(tmp_path, seed)
    rng = random.Random(1000 + seed)
    bases = sorted(image.segments)
    untrusted = [b for b in bases if not image.trusted(b)]
    assert len(untrusted) >= 2 and len(untrusted) < len(bases)
    for case in range(40):
        data_dir = snapshot(image.path, tmp_path / f"case{case}")
        part = data_dir / PART
        expected = dict(image.segments)
        if rng.random() < 0.85:
            # The .log of a segment past the recovery point (the last one
            # more often: that is where writes were going).
            target = bases[-1] if rng.random() < 0.5 else rng.choice(untrusted)
            at, cut = damage_log(rng, part / f"{target:020d}.log", image.segments[target])
            expected[target] = [b for b in image.segments[target] if b.position + len(b.data) <= at]
            # Bytes that recovery has to cut mean a torn write: every later
            # segment goes with them (as in Kafka). A file that merely ends
            # early, on a batch boundary, cannot be told from one whose tail
            # compaction removed, so the segments after it stay.
            if cut:
                for later in bases[bases.index(target) + 1 :]:
                    del expected[later]
        for _ in range(rng.randint(0, 3)):
            base = rng.choice(bases)
            suffix = rng.choice([".index", ".timeindex"])
            damage_index(rng, part / f"{base:020d}{suffix}", image.trusted(base))
        mgr, log = open_unclean(data_dir)
        end = check_recovered(data_dir, log, expected)
        close_and_check_layout(mgr, data_dir, end)
        shutil.rmtree(data_dir)


def test_unclean_restart_without_damage_keeps_everything(tmp_path):
    image = build_image(tmp_path, 7)
    mgr, log = open_unclean(image.path)
    assert log.recovery_point == image.recovery_point
    (start,) = [int(e[2]) for e in parse_checkpoint(image.path / LOG_START_FILE, 3)]
    assert log.log_start_offset == start == 5
    end = check_recovered(image.path, log, image.segments)
    close_and_check_layout(mgr, image.path, end)


def test_a_recovered_tail_is_checked_again_after_a_second_crash(tmp_path):
    """The recovery point may not pass what recovery read back: the tail it
    accepted may still be only in the page cache."""
    image = build_image(tmp_path, 3)
    mgr, log = open_unclean(image.path)
    mgr.checkpoint()
    second = snapshot(image.path, tmp_path / "second")
    mgr.close()
    # The second crash loses the end of a segment the first recovery read.
    bases = sorted(image.segments)
    victim = next(b for b in bases if not image.trusted(b))
    assert victim != bases[-1]
    path = second / PART / f"{victim:020d}.log"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10] + bytes(10))
    mgr, log = open_unclean(second)
    expected = {b: image.segments[b] for b in bases if b <= victim}
    expected[victim] = image.segments[victim][:-1]
    check_recovered(second, log, expected)
    mgr.close()


# -- a crash at every byte of an append or a roll -----------------------------------------


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def write_state(data_dir: Path, top: dict[str, bytes], part: dict[str, bytes]) -> None:
    shutil.rmtree(data_dir, ignore_errors=True)
    (data_dir / PART).mkdir(parents=True)
    for name, data in top.items():
        (data_dir / name).write_bytes(data)
    for name, data in part.items():
        (data_dir / PART / name).write_bytes(data)


def appended_states(tmp_path, *, roll: bool):
    """Files before and after one append of three batches (the append rolls
    a new segment when ``roll``), both taken while the log is open."""
    live = tmp_path / "live"
    config = LogConfig(segment_bytes=2400 if roll else 10**6, index_interval_bytes=0, segment_index_bytes=4096)
    mgr = LogManager([live], lambda t: config)
    log = mgr.create(TOPIC, 0)
    rng = random.Random(5)
    for i in range(12):
        log.append(random_batch(rng, i), leader_epoch=1, now=T0)
    log.flush()
    mgr.checkpoint()
    if roll:
        while log.active.size < 1500:
            log.append(random_batch(rng, 20), leader_epoch=1, now=T0)
    before = (files_of(live), files_of(live / PART))
    segments_before = len(log.segments)
    raws = [build_batch([NewRecord(b"k%d" % i, b"v" * (300 + 50 * i), (), T0 + i)], compression=i) for i in range(3)]
    result = log.append(b"".join(raws), leader_epoch=2, now=T0)
    assert (len(log.segments) > segments_before) == roll
    after = (files_of(live), files_of(live / PART))
    mgr.close()
    return before, after, result


def test_crash_at_every_byte_of_an_append(tmp_path):
    (top0, part0), (top1, part1), result = appended_states(tmp_path, roll=False)
    (name,) = [n for n in part1 if n.endswith(".log")]
    old = parse_log_bytes(part0[name])
    new = parse_log_bytes(part1[name])[len(old) :]
    assert len(new) == 3
    size0 = len(part0[name])
    for k in range(len(part1[name]) - size0 + 1):
        state = dict(part0 if k % 2 else part1)  # indexes and epochs from before or after
        state[name] = part1[name][: size0 + k]
        data_dir = tmp_path / "case"
        write_state(data_dir, top0, state)
        mgr, log = open_unclean(data_dir)
        whole = [b for b in new if b.position + len(b.data) <= size0 + k]
        # The new epoch is known exactly when one of its batches survived,
        # whether or not its checkpoint was written before the crash.
        assert log.epochs.entries == [(1, 0)] + ([(2, result.base_offset)] if whole else [])
        check_recovered(data_dir, log, {0: old + whole})
        mgr.close()


def parse_log_bytes(data: bytes) -> list[DiskBatch]:
    batches, rest = parse_log_data(data)
    assert rest == 0
    return batches


def test_crash_at_every_step_of_a_roll(tmp_path):
    (top0, part0), (top1, part1), result = appended_states(tmp_path, roll=True)
    old_log = max(n for n in part0 if n.endswith(".log"))
    new_log = max(n for n in part1 if n.endswith(".log"))
    assert old_log != new_log and int(new_log[:20]) == result.base_offset
    stem_old, stem_new = old_log[:20], new_log[:20]
    new_batches = parse_log_bytes(part1[new_log])
    old_segments = {int(n[:20]): parse_log_bytes(d) for n, d in part0.items() if n.endswith(".log")}
    cases = 0
    for old_indexes in ("before", "after"):  # untrimmed and preallocated, or trimmed with the roll entry
        for created in ("no", "empty") + tuple(range(0, len(part1[new_log]) + 1, 7)):
            state = dict(part0)
            if old_indexes == "after":
                for suffix in (".index", ".timeindex"):
                    state[stem_old + suffix] = part1[stem_old + suffix]
            expected = dict(old_segments)
            if created != "no":
                size = 0 if created == "empty" else created
                state[new_log] = part1[new_log][:size]
                for suffix in (".index", ".timeindex"):
                    state[stem_new + suffix] = part1.get(stem_new + suffix, b"") if size % 2 else b""
                epochs_from = part1 if size % 3 else part0
                state["leader-epoch-checkpoint"] = epochs_from["leader-epoch-checkpoint"]
                expected[int(stem_new)] = [b for b in new_batches if b.position + len(b.data) <= size]
            data_dir = tmp_path / "case"
            write_state(data_dir, top0, state)
            mgr, log = open_unclean(data_dir)
            survived = expected.get(result.base_offset)
            assert log.epochs.entries == [(1, 0)] + ([(2, result.base_offset)] if survived else [])
            check_recovered(data_dir, log, expected)
            mgr.close()
            cases += 1
    assert cases > 50


# -- a crash while writing checkpoints -------------------------------------------------------


def test_crash_during_a_checkpoint_write(tmp_path):
    live = tmp_path / "live"
    mgr = LogManager([live], lambda t: LogConfig(segment_bytes=1000))
    logs = [mgr.create("a", 0), mgr.create("b", 1)]
    rng = random.Random(9)
    old_values = {}
    for log in logs:
        for i in range(10):
            log.append(random_batch(rng, i), leader_epoch=0, now=T0)
        log.set_high_watermark(log.log_end_offset - 3)
        log.delete_records(2)
        log.flush()
        old_values[log.topic] = {"recovery": log.log_end_offset, "start": 2, "hw": log.log_end_offset - 3}
    mgr.checkpoint()
    old = files_of(live)
    new_values = {}
    for log in logs:
        for i in range(5):
            log.append(random_batch(rng, i), leader_epoch=1, now=T0)
        log.set_high_watermark(log.log_end_offset - 1)
        log.delete_records(7)
        log.flush()
        new_values[log.topic] = {"recovery": log.log_end_offset, "start": 7, "hw": log.log_end_offset - 1}
    parts = {log.directory.name: files_of(log.directory) for log in logs}
    mgr.checkpoint()
    new = files_of(live)
    mgr.close()
    # LogManager.checkpoint writes these in turn, each to .tmp, then renamed.
    order = ["recovery-point-offset-checkpoint", "log-start-offset-checkpoint", "replication-offset-checkpoint",
             "cleaner-offset-checkpoint"]
    key = dict(zip(order, ["recovery", "start", "hw", None]))
    states = []
    for done in range(len(order) + 1):
        files = {n: (new[n] if n in order[:done] else old[n]) for n in order}
        if done < len(order):
            for k in range(len(new[order[done]]) + 1):
                states.append((done, {**files, order[done] + ".tmp": new[order[done]][:k]}))
        else:
            states.append((done, files))
    assert len(states) > 40
    for n, (done, files) in enumerate(states):
        data_dir = tmp_path / f"case{n}"
        write_state(data_dir, files, {})
        shutil.rmtree(data_dir / PART)
        for name, contents in parts.items():
            (data_dir / name).mkdir()
            for fname, data in contents.items():
                (data_dir / name / fname).write_bytes(data)
        # The leader-epoch checkpoint caught mid-write too.
        (data_dir / "a-0" / "leader-epoch-checkpoint.tmp").write_bytes(b"0\n2\n0 0\n1 ")
        reopened = LogManager([data_dir], lambda t: LogConfig(segment_bytes=1000))
        assert reopened.unclean_dirs == [data_dir]
        for log in logs:
            got = reopened.get(log.topic, log.partition)
            written = {key[f]: (new_values if f in order[:done] else old_values)[log.topic][key[f]] for f in order[:3]}
            first_segment = min(int(f[:20]) for f in parts[log.directory.name] if f.endswith(".log"))
            start = max(written["start"], first_segment)
            assert got.log_end_offset == log.log_end_offset
            assert got.log_start_offset == start
            assert got.high_watermark == max(written["hw"], start)
            assert got.recovery_point == written["recovery"]
            assert got.epochs.entries == log.epochs.entries
            assert read_everything(got)[-1][0] < got.log_end_offset
        reopened.close()
        shutil.rmtree(data_dir)


# -- a crash during a compaction swap ----------------------------------------------------------


def cleaned_state(tmp_path):
    """A log with closed segments, and beside it the ``.cleaned`` files of a
    rewrite of its first two segments that keeps every other batch."""
    live = tmp_path / "live"
    config = LogConfig(segment_bytes=1500, index_interval_bytes=100, cleanup_policy=frozenset({"compact"}))
    mgr = LogManager([live], lambda t: config)
    log = mgr.create(TOPIC, 0)
    rng = random.Random(11)
    for i in range(40):
        log.append(random_batch(rng, i), leader_epoch=0, now=T0)
    log.set_high_watermark(log.log_end_offset)
    log.flush()
    mgr.checkpoint()
    old = log.segments[:2]
    new = log.new_cleaned_segment(old[0].base_offset)
    kept, dropped = [], []
    for seg in old:
        for n, info in enumerate(seg.scan_headers()):
            data = seg.read_at(info.position, info.size)
            if n % 2:
                dropped.append(info.base_offset)
                continue
            new.append(data, [BatchInfo(0, info.base_offset, info.last_offset, info.size, info.max_timestamp)])
            kept.append(info.base_offset)
    new.on_roll()
    new.flush()
    before = files_of(live / PART)
    return mgr, log, old, new, before, kept, dropped


def test_crash_during_a_compaction_swap(tmp_path):
    mgr, log, old, new, files, kept, dropped = cleaned_state(tmp_path)
    top = files_of(tmp_path / "live")
    old_offsets = [b for b, _ in read_everything(log)]
    new_offsets = [b for b in old_offsets if b not in dropped]
    assert dropped and new_offsets != old_offsets
    base = f"{old[0].base_offset:020d}"
    other = f"{old[1].base_offset:020d}"
    cleaned = {s: files[f"{base}{s}.cleaned"] for s in (".log", ".index", ".timeindex")}
    originals = {n: d for n, d in files.items() if not n.endswith(".cleaned")}

    def state(cleaned_as: dict[str, str], delete_old: tuple[str, ...] = ()) -> dict[str, bytes]:
        out = dict(originals)
        for stem in delete_old:
            for s in (".log", ".index", ".timeindex"):
                out.pop(f"{stem}{s}", None)
        for s, name_suffix in cleaned_as.items():
            out[f"{base}{s}{name_suffix}"] = cleaned[s]
        return out

    all_cleaned = {s: ".cleaned" for s in cleaned}
    states = [
        # Not committed: the old segments stay, the .cleaned files go.
        ({s: ".cleaned" for s in (".index",)}, (), old_offsets),
        (all_cleaned, (), old_offsets),
        ({".index": ".swap", ".timeindex": ".cleaned", ".log": ".cleaned"}, (), old_offsets),
        ({".index": ".swap", ".timeindex": ".swap", ".log": ".cleaned"}, (), old_offsets),
        # Committed (.log.swap exists): the swap is finished on open.
        ({s: ".swap" for s in cleaned}, (), new_offsets),
        ({s: ".swap" for s in cleaned}, (base,), new_offsets),
        ({s: ".swap" for s in cleaned}, (base, other), new_offsets),
        ({".index": "", ".timeindex": ".swap", ".log": ".swap"}, (base, other), new_offsets),
        ({".index": "", ".timeindex": "", ".log": ".swap"}, (base, other), new_offsets),
        ({s: "" for s in cleaned}, (base, other), new_offsets),
    ]
    # A .cleaned .log cut short at any point is discarded just the same.
    for k in range(0, len(cleaned[".log"]), 97):
        partial = state(all_cleaned)
        partial[f"{base}.log.cleaned"] = cleaned[".log"][:k]
        states.append((partial, None, old_offsets))
    for n, (layout, delete_old, expected) in enumerate(states):
        part_files = layout if delete_old is None else state(layout, delete_old)
        for clean in (False, True):
            data_dir = tmp_path / f"case{n}-{clean}"
            write_state(data_dir, {**top, **({CLEAN_SHUTDOWN_FILE: b""} if clean else {})}, part_files)
            mgr2 = LogManager([data_dir], lambda t: log.config)
            got = mgr2.get(TOPIC, 0)
            assert [b for b, _ in read_everything(got)] == expected, (n, layout, delete_old)
            names = [p.name for p in (data_dir / PART).iterdir()]
            assert not [x for x in names if x.endswith((".cleaned", ".swap"))], names
            mgr2.close()
            check_segment_files(data_dir / PART, 100, exact_time_index=False)
            shutil.rmtree(data_dir)
    # And the real swap ends where the crash states say it should.
    log.replace_segments(old, new)
    assert [b for b, _ in read_everything(log)] == new_offsets
    mgr.close()
    again = LogManager([tmp_path / "live"], lambda t: log.config).get(TOPIC, 0)
    assert [b for b, _ in read_everything(again)] == new_offsets
