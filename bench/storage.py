"""Storage throughput: PartitionLog appends and sequential reads, each beside
the same bytes written to and read from a plain file in the same run.

    python -m bench.storage [--quick] [--dir DIR] [--rounds N] [--mib N]

For 16 KiB and 1 MiB record batches (uncompressed, random bytes):

* append: ``PartitionLog.append`` of one batch at a time, as the produce path
  does it (a writable buffer, patched in place: offsets assigned, leader
  epoch stamped, indexes kept; the CRC was checked once by the produce
  handler before), against ``os.write`` of the same batch bytes to a plain
  file; "append+crc" is the same with the log checking the CRC itself, as
  it does for callers that have not;
* read: ``PartitionLog.read`` from offset 0 to the end in 1 MiB fetches up to
  the high watermark, as a consumer's fetches do, against ``os.pread`` of
  the plain file in 1 MiB chunks.

Both sides write to the page cache (no fsync: durability is the flusher's
job and costs the same on both) and read back what they just wrote, so both
reads are served from memory. Every round does raw and log back to back,
alternating which goes first, and removes its files afterwards, so both
sides meet the same page-cache state; rounds are kept small (256 MiB) so
that background writeback, which on a VM can halve a round's speed, rarely
lands inside one. The MB/s figures are medians over the rounds; the ratio
is the median of the rounds' log / raw ratios. The goal is a ratio of at
least 0.8 for both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from pybroker.protocol.records import NewRecord, RecordBatch, build_batch
from pybroker.storage.config import LogConfig
from pybroker.storage.log import PartitionLog

KiB, MiB = 1024, 1024 * 1024
FETCH_BYTES = MiB
RECORD_VALUE = 1000  # bytes per record in the batch
TIMESTAMP = 1_700_000_000_000


def make_batch(size: int) -> bytes:
    """One uncompressed batch of exactly ``size`` bytes of ~1 KB records."""
    values = [os.urandom(RECORD_VALUE) for _ in range(max((size - 61) // (RECORD_VALUE + 20), 1))]
    while True:
        batch = build_batch([NewRecord(None, value, (), TIMESTAMP) for value in values])
        if len(batch) == size:
            return batch
        values[-1] = os.urandom(len(values[-1]) + size - len(batch))


def raw_write(path: Path, batch: bytes, count: int) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        start = time.perf_counter()
        for _ in range(count):
            view = memoryview(batch)
            while view:
                view = view[os.write(fd, view) :]
        return time.perf_counter() - start
    finally:
        os.close(fd)


def raw_read(path: Path) -> tuple[float, int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        total = 0
        start = time.perf_counter()
        while True:
            chunk = os.pread(fd, FETCH_BYTES, total)
            if not chunk:
                break
            total += len(chunk)
        return time.perf_counter() - start, total
    finally:
        os.close(fd)


def log_append(log: PartitionLog, batch: bytes, count: int, validate: bool) -> float:
    buf = bytearray(batch)  # a request frame is a bytearray the log patches in place
    now = TIMESTAMP
    append = log.append
    # Untimed: a new leader epoch is checkpointed (fsynced) on its first
    # append, once per partition and epoch; the figure is the steady state.
    append(buf, leader_epoch=0, now=now, validate=validate)
    start = time.perf_counter()
    for _ in range(count):
        append(buf, leader_epoch=0, now=now, validate=validate)
    return time.perf_counter() - start


def log_read(log: PartitionLog, batch_size: int, records_per_batch: int) -> tuple[float, int]:
    log.set_high_watermark(log.log_end_offset)
    end = log.log_end_offset
    read = log.read
    offset = total = 0
    start = time.perf_counter()
    while offset < end:
        got = read(offset, FETCH_BYTES)
        size = len(got.data)
        # Every batch is the same size, so the next offset needs no parsing.
        offset = got.first_offset + size // batch_size * records_per_batch
        total += size
    return time.perf_counter() - start, total


def warm_up(directory: Path, total: int) -> None:
    """Touch as much page cache as a round uses, once, untimed: the first
    pages a process (or a VM) touches can cost many times what reused ones do."""
    path = directory / "warm-up"
    raw_write(path, os.urandom(MiB), max(total // MiB, 1))
    raw_read(path)
    path.unlink()


def run_case(directory: Path, batch_size: int, total: int, rounds: int) -> dict[str, list[float]]:
    batch = make_batch(batch_size)
    records = RecordBatch(batch).record_count
    count = max(total // batch_size, 1)
    nbytes = count * batch_size
    results: dict[str, list[float]] = {"raw write": [], "log append": [], "log append+crc": [], "raw read": [], "log read": []}
    for r in range(rounds):
        raw_path = directory / "raw.bin"
        log_dir = directory / "bench-0"
        order = ("raw", "log") if r % 2 == 0 else ("log", "raw")
        log = None
        for side in order:
            if side == "raw":
                results["raw write"].append(nbytes / raw_write(raw_path, batch, count) / 1e6)
            else:
                log = PartitionLog(log_dir, LogConfig())
                results["log append+crc"].append(nbytes / log_append(log, batch, count, True) / 1e6)
                log.delete()
                log = PartitionLog(log_dir, LogConfig())
                results["log append"].append(nbytes / log_append(log, batch, count, False) / 1e6)
                assert log.size_in_bytes == nbytes + batch_size
        for side in order:
            if side == "raw":
                seconds, got = raw_read(raw_path)
                assert got == nbytes
            else:
                seconds, got = log_read(log, batch_size, records)
                assert got == nbytes + batch_size
            results[f"{side} read"].append(got / seconds / 1e6)
        log.delete()
        raw_path.unlink()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB per case, 3 rounds (a smoke run)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary directory)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per case (default 9, quick 3)")
    parser.add_argument("--mib", type=int, default=None, help="MiB written per case and round (default 256)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 9)
    total = (args.mib or (64 if args.quick else 256)) * MiB
    base = Path(tempfile.mkdtemp(prefix="bench-storage-", dir=args.dir))
    try:
        warm_up(base, total)
        print(f"storage: {total // MiB} MiB per case and round, {rounds} rounds, medians; files in {base}")
        print(f"{'':24}{'raw file MB/s':>15}{'PartitionLog MB/s':>20}{'ratio':>8}")
        for batch_size, label in ((16 * KiB, "16 KiB"), (MiB, "1 MiB")):
            res = run_case(base, batch_size, total, rounds)
            cases = (
                ("append", "raw write", "log append"),
                ("append+crc", "raw write", "log append+crc"),
                ("read", "raw read", "log read"),
            )
            for what, raw_key, log_key in cases:
                raw = statistics.median(res[raw_key])
                log = statistics.median(res[log_key])
                ratio = statistics.median(x / y for x, y in zip(res[log_key], res[raw_key]))
                print(f"{what + ' ' + label + ' batches':24}{raw:15.0f}{log:20.0f}{ratio:8.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
