"""The replicas of one partition, read from the brokers' log directories
with nothing but the bytes on disk, checked to be Kafka's format and
compared batch by batch below the high watermark.

``read_replica`` walks ``<log dir>/<topic>-<partition>`` as Kafka lays it
out and refuses (ReplicaFormatError, naming the broker, the file, the byte
position and the offset) anything that is not:

* segments ``<20-digit base offset>.log``, each with its ``.index`` and
  ``.timeindex``; a ``.log`` is whole record batches and nothing else, each
  with a valid header (magic 2, a length of at least the 49 bytes after the
  length field, a known codec, a last offset delta >= 0) and its CRC-32C;
  base offsets increase down the log, no batch starts below its segment's
  base offset or reaches the next segment's, and (unless the topic is
  compacted: ``contiguous=False``) each batch starts where the one before
  ended;
* an ``.index`` of (int32 relative offset, int32 position) entries, both
  strictly increasing, each position the start of a batch holding an
  offset at or below the entry's; a ``.timeindex`` of (int64 timestamp,
  int32 relative offset) entries, timestamps strictly increasing, offsets
  never decreasing, each naming a batch whose max timestamp is the entry's.
  The zeros an index file is preallocated with while its segment is active
  are allowed after the entries, as Kafka allows them;
* a ``leader-epoch-checkpoint`` in Kafka's text format ("0", the count,
  then "epoch start-offset" lines), epochs and start offsets strictly
  increasing, agreeing with the batches: a batch carries the epoch of the
  entry its base offset falls under, and no entry after the first (which
  the log start may have moved into a batch) starts inside a batch;
* a ``partition.metadata`` that Kafka's reader accepts ("version: 0",
  "topic_id: <base64 UUID>"), the same topic id on every replica.

``compare`` then takes the batches below the high watermark from each
replica and requires them byte-identical (ReplicasDiffer names the first
offset where they differ, the brokers, and the first differing byte of the
batch header or body); every replica must hold the log up to the high
watermark. The batches come back for the caller to look at further.

Written against Kafka's formats, not our storage code, which it is meant
to check: only the record batch view of the codec is borrowed.
"""

from __future__ import annotations

import base64
import re
import struct
import uuid
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from pybroker.protocol.errors import CorruptRecordError
from pybroker.protocol.record_batch import HEADER_SIZE, LOG_OVERHEAD, MIN_BATCH_LENGTH, RecordBatch

SEGMENT = re.compile(r"^(\d{20})\.log$")
EPOCH_FILE = "leader-epoch-checkpoint"
METADATA_FILE = "partition.metadata"
_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
# Header fields by byte range, to name where two batches first differ.
_FIELDS = (
    (0, 8, "base offset"),
    (8, 12, "batch length"),
    (12, 16, "partition leader epoch"),
    (16, 17, "magic"),
    (17, 21, "crc"),
    (21, 23, "attributes"),
    (23, 27, "last offset delta"),
    (27, 35, "base timestamp"),
    (35, 43, "max timestamp"),
    (43, 51, "producer id"),
    (51, 53, "producer epoch"),
    (53, 57, "base sequence"),
    (57, 61, "record count"),
)


class ReplicaFormatError(AssertionError):
    """A replica's files are not Kafka's format."""


class ReplicasDiffer(AssertionError):
    """Replicas hold different bytes below the high watermark."""


@dataclass(frozen=True)
class DiskBatch:
    """One record batch as it lies in a segment file."""

    base_offset: int
    last_offset: int
    leader_epoch: int
    max_timestamp: int
    data: bytes
    segment: Path
    position: int

    def describe(self) -> str:
        crc = struct.unpack_from(">I", self.data, 17)[0]
        return (
            f"batch {self.base_offset}..{self.last_offset} (epoch {self.leader_epoch}, "
            f"{len(self.data)} bytes, crc {crc:#010x}, {self.segment.name} at byte {self.position})"
        )


@dataclass
class Replica:
    broker: object
    directory: Path
    batches: list[DiskBatch]
    # Where the next batch would go: past the last batch, or the base offset
    # of the last segment when it is empty (a log truncated or rolled).
    log_end_offset: int
    epochs: list[tuple[int, int]]
    topic_id: uuid.UUID | None
    segments: list[int] = field(default_factory=list)

    def below(self, offset: int, start: int | None = None) -> list[DiskBatch]:
        """The batches holding offsets below ``offset`` (and not wholly
        below ``start``)."""
        return [b for b in self.batches if b.base_offset < offset and (start is None or b.last_offset >= start)]


# -- reading one replica ------------------------------------------------------------


def partition_dir(log_dirs: PathLike | str | Iterable[PathLike | str], topic: str, partition: int) -> Path:
    """The one directory among a broker's log dirs holding the partition."""
    dirs = [Path(log_dirs)] if isinstance(log_dirs, (str, PathLike)) else [Path(d) for d in log_dirs]
    found = [d / f"{topic}-{partition}" for d in dirs if (d / f"{topic}-{partition}").is_dir()]
    if len(found) != 1:
        where = ", ".join(str(d) for d in dirs)
        raise ReplicaFormatError(f"{topic}-{partition} is in {len(found)} of the log dirs {where}, not in one")
    return found[0]


def read_replica(log_dirs, topic: str, partition: int, *, broker: object = None, contiguous: bool = True) -> Replica:
    """The partition's replica in ``log_dirs`` (one path or several),
    checked as the module docstring says."""
    directory = partition_dir(log_dirs, topic, partition)
    who = f"broker {broker}" if broker is not None else str(directory)
    bases = sorted(int(m.group(1)) for p in directory.iterdir() if (m := SEGMENT.match(p.name)))
    if not bases:
        raise ReplicaFormatError(f"{who}: {directory} holds no segment (.log) file")
    batches: list[DiskBatch] = []
    for i, base in enumerate(bases):
        limit = bases[i + 1] if i + 1 < len(bases) else None
        segment = _read_segment(who, directory, base, limit, batches[-1] if batches else None, contiguous)
        batches += segment
    log_end = max(batches[-1].last_offset + 1 if batches else 0, bases[-1])
    epochs = _read_epochs(who, directory / EPOCH_FILE)
    _check_epochs(who, directory / EPOCH_FILE, epochs, batches)
    topic_id = _read_topic_id(who, directory / METADATA_FILE)
    return Replica(broker, directory, batches, log_end, epochs, topic_id, bases)


def _read_segment(who, directory: Path, base: int, limit, previous: DiskBatch | None, contiguous: bool):
    stem = f"{base:020d}"
    path = directory / f"{stem}.log"
    for suffix in (".index", ".timeindex"):
        if not (directory / f"{stem}{suffix}").is_file():
            raise ReplicaFormatError(f"{who}: {path.name} has no {stem}{suffix}")
    data = path.read_bytes()
    out: list[DiskBatch] = []
    pos = 0
    while pos < len(data):
        batch = _batch_at(who, path, data, pos)
        where = f"{who}: {path.name} at byte {pos}, offset {batch.base_offset}"
        if batch.base_offset < base:
            raise ReplicaFormatError(f"{where}: below the segment's base offset {base}")
        if batch.last_offset - base > _INT32_MAX:
            raise ReplicaFormatError(f"{where}: last offset {batch.last_offset} too far past the base offset {base}")
        if limit is not None and batch.last_offset >= limit:
            raise ReplicaFormatError(f"{where}: reaches the next segment's base offset {limit}")
        before = out[-1] if out else previous
        if before is not None:
            if batch.base_offset <= before.last_offset:
                raise ReplicaFormatError(f"{where}: does not follow {before.describe()}")
            if contiguous and batch.base_offset != before.last_offset + 1:
                gap = before.last_offset + 1, batch.base_offset - 1
                missing = f"offset {gap[0]} is" if gap[0] == gap[1] else f"offsets {gap[0]}..{gap[1]} are"
                raise ReplicaFormatError(f"{where}: {missing} missing after {before.describe()}")
        out.append(batch)
        pos += len(batch.data)
    _check_offset_index(who, directory / f"{stem}.index", base, out)
    _check_time_index(who, directory / f"{stem}.timeindex", base, out)
    return out


def _batch_at(who, path: Path, data: bytes, pos: int) -> DiskBatch:
    rest = len(data) - pos
    where = f"{who}: {path.name} at byte {pos}"
    if rest < LOG_OVERHEAD:
        raise ReplicaFormatError(f"{where}: {rest} trailing bytes, not a batch")
    base, length = struct.unpack_from(">qi", data, pos)
    where += f", offset {base}"
    if length < MIN_BATCH_LENGTH:
        raise ReplicaFormatError(f"{where}: batch length {length} is below {MIN_BATCH_LENGTH}")
    if LOG_OVERHEAD + length > rest:
        raise ReplicaFormatError(f"{where}: a batch of {LOG_OVERHEAD + length} bytes cut short at {rest}")
    raw = data[pos : pos + LOG_OVERHEAD + length]
    try:
        batch = RecordBatch(raw)
        batch.validate()
        batch.compression  # noqa: B018 - raises for a codec Kafka does not know
    except CorruptRecordError as exc:
        raise ReplicaFormatError(f"{where}: {exc}") from None
    if batch.last_offset_delta < 0:
        raise ReplicaFormatError(f"{where}: negative last offset delta {batch.last_offset_delta}")
    assert len(raw) >= HEADER_SIZE
    return DiskBatch(base, batch.last_offset, batch.partition_leader_epoch, batch.max_timestamp, raw, path, pos)


def _entries(who, path: Path, entry: struct.Struct, valid) -> list[tuple]:
    """An index file's entries: those ``valid(previous, entry)`` accepts
    in a row, then nothing but preallocated zeros."""
    data = path.read_bytes()
    if len(data) % entry.size:
        raise ReplicaFormatError(f"{who}: {path.name} is {len(data)} bytes, not whole {entry.size}-byte entries")
    out: list[tuple] = []
    for pos in range(0, len(data), entry.size):
        e = entry.unpack_from(data, pos)
        if not valid(out[-1] if out else None, e):
            if any(data[pos:]):
                raise ReplicaFormatError(f"{who}: {path.name} entry {len(out)} at byte {pos} is {e}, out of order")
            break
        out.append(e)
    return out


def _check_offset_index(who, path: Path, base: int, batches: list[DiskBatch]) -> None:
    def valid(prev, e):
        rel, position = e
        return rel >= 0 and position >= 0 and (prev is None or (rel > prev[0] and position > prev[1]))

    at = {b.position: b for b in batches}
    last = batches[-1].last_offset if batches else base - 1

    def holds(rel, position):
        b = at.get(position)
        return b is not None and b.base_offset <= base + rel <= last

    entries = _entries(who, path, _OFFSET_ENTRY, valid)
    if entries == [(0, 0)] and not holds(0, 0):
        entries = []  # the zeros of a preallocated file
    for rel, position in entries:
        if not holds(rel, position):
            b = at.get(position)
            raise ReplicaFormatError(
                f"{who}: {path.name} maps offset {base + rel} to byte {position}, "
                + ("where no batch starts" if b is None else f"where {b.describe()} starts")
            )


def _check_time_index(who, path: Path, base: int, batches: list[DiskBatch]) -> None:
    def valid(prev, e):
        ts, rel = e
        return rel >= 0 and (prev is None or (ts > prev[0] and rel >= prev[1]))

    entries = _entries(who, path, _TIME_ENTRY, valid)
    if entries == [(0, 0)] and getattr(_holding(batches, base), "max_timestamp", None) != 0:
        entries = []  # the zeros of a preallocated file
    for ts, rel in entries:
        holder = _holding(batches, base + rel)
        if holder is None or holder.max_timestamp != ts:
            raise ReplicaFormatError(
                f"{who}: {path.name} says offset {base + rel} holds timestamp {ts}, but "
                + ("no batch holds it" if holder is None else f"{holder.describe()} has max {holder.max_timestamp}")
            )


def _holding(batches: list[DiskBatch], offset: int) -> DiskBatch | None:
    i = bisect_right(batches, offset, key=lambda b: b.base_offset) - 1
    if i >= 0 and batches[i].last_offset >= offset:
        return batches[i]
    return None


# -- the text files -------------------------------------------------------------------


def _read_epochs(who, path: Path) -> list[tuple[int, int]]:
    """Kafka's CheckpointFile: version 0, a count, that many entries; a
    missing or empty file, or one with the version alone, is no entries."""
    if not path.exists():
        return []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReplicaFormatError(f"{who}: {path.name} is not UTF-8: {exc}") from None
    lines = text.splitlines()
    bad = f"{who}: {path.name} is not a checkpoint file: {text!r}"
    if not lines:
        return []
    if lines[0].strip() != "0":
        raise ReplicaFormatError(bad + " (version is not 0)")
    if len(lines) == 1:
        return []
    if not re.fullmatch(r"\d+", lines[1].strip()) or int(lines[1]) != len(lines) - 2:
        raise ReplicaFormatError(bad + " (the count is not the number of entries)")
    entries = []
    for line in lines[2:]:
        fields = line.split()
        if len(fields) != 2 or not all(re.fullmatch(r"\d+", f) for f in fields):
            raise ReplicaFormatError(bad + f" (entry {line!r})")
        epoch, start = int(fields[0]), int(fields[1])
        if epoch > _INT32_MAX or start > _INT64_MAX:
            raise ReplicaFormatError(bad + f" (entry {line!r} out of range)")
        if entries and not (epoch > entries[-1][0] and start > entries[-1][1]):
            raise ReplicaFormatError(bad + f" (entry {line!r} does not follow {entries[-1]})")
        entries.append((epoch, start))
    return entries


def _check_epochs(who, path: Path, epochs: list[tuple[int, int]], batches: list[DiskBatch]) -> None:
    if not batches:
        return
    starts = {b.base_offset for b in batches}
    for i, (epoch, start) in enumerate(epochs):
        inside = _holding(batches, start)
        if i > 0 and inside is not None and start not in starts:
            raise ReplicaFormatError(f"{who}: {path.name} starts epoch {epoch} at {start}, inside {inside.describe()}")
    k = 0
    for b in batches:
        if b.leader_epoch < 0 or not epochs or b.last_offset < epochs[0][1]:
            continue
        offset = max(b.base_offset, epochs[0][1])
        while k + 1 < len(epochs) and epochs[k + 1][1] <= offset:
            k += 1
        if b.leader_epoch != epochs[k][0]:
            raise ReplicaFormatError(
                f"{who}: at offset {b.base_offset} {b.describe()} is in epoch {b.leader_epoch}, "
                f"but {path.name} says epoch {epochs[k][0]} from offset {epochs[k][1]}"
            )


def _read_topic_id(who, path: Path) -> uuid.UUID | None:
    """Kafka's PartitionMetadataFile: "version: 0" then "topic_id: <id>";
    an empty file (Kafka 2.8 wrote one) is no id."""
    if not path.exists():
        return None
    data = path.read_bytes()
    if not data:
        return None
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ReplicaFormatError(f"{who}: {path.name} is not UTF-8: {exc}") from None
    pairs = [re.split(r":\s+", line, maxsplit=1) for line in lines]
    if len(pairs) < 2 or [p[0] for p in pairs[:2]] != ["version", "topic_id"] or any(len(p) != 2 for p in pairs[:2]):
        raise ReplicaFormatError(f"{who}: {path.name} is not Kafka's partition metadata: {data!r}")
    if not re.fullmatch(r"\d+", pairs[0][1]):
        raise ReplicaFormatError(f"{who}: {path.name} has version {pairs[0][1]!r}")
    text = pairs[1][1]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raw = b""
    if not re.fullmatch(r"[A-Za-z0-9_-]{22}", text) or len(raw) != 16 or raw == bytes(16):
        raise ReplicaFormatError(f"{who}: {path.name} has topic id {text!r}, not a base64 UUID")
    return uuid.UUID(bytes=raw)


# -- comparing replicas -----------------------------------------------------------------


def read_replicas(log_dirs_by_broker: Mapping, topic: str, partition: int, *, contiguous: bool = True) -> dict:
    """{broker: Replica} for {broker: its log dir(s)}, all checked, all of
    one topic id."""
    replicas = {
        broker: read_replica(dirs, topic, partition, broker=broker, contiguous=contiguous)
        for broker, dirs in log_dirs_by_broker.items()
    }
    ids = {r.topic_id for r in replicas.values()}
    if len(ids) > 1:
        shown = ", ".join(f"broker {b}: {r.topic_id}" for b, r in replicas.items())
        raise ReplicaFormatError(f"the replicas of {topic}-{partition} belong to different topic ids ({shown})")
    return replicas


def first_difference(replicas: Mapping, high_watermark: int, start: int | None = None) -> str | None:
    """Why the replicas are not byte-identical below ``high_watermark``
    (from ``start``), naming the lowest offset where one differs from the
    first broker's; None when they are identical."""
    (ref_broker, ref), *others = replicas.items()
    problems = []
    for broker, replica in [(ref_broker, ref), *others]:
        if replica.log_end_offset < high_watermark:
            ends = f"broker {broker}'s log ends at offset {replica.log_end_offset}"
            problems.append((replica.log_end_offset, f"{ends}, below the high watermark {high_watermark}"))
    mine = ref.below(high_watermark, start)
    for broker, replica in others:
        theirs = replica.below(high_watermark, start)
        for i in range(max(len(mine), len(theirs))):
            a = mine[i] if i < len(mine) else None
            b = theirs[i] if i < len(theirs) else None
            if a is not None and b is not None and a.data == b.data:
                continue
            problems.append(_difference(ref_broker, a, broker, b))
            break
    if not problems:
        return None
    problems.sort(key=lambda p: p[0])
    return f"replicas differ below the high watermark {high_watermark}: " + "; ".join(p[1] for p in problems)


def _difference(broker_a, a: DiskBatch | None, broker_b, b: DiskBatch | None) -> tuple[int, str]:
    if a is None or b is None:
        present, missing, batch = (broker_a, broker_b, a) if b is None else (broker_b, broker_a, b)
        return (
            batch.base_offset,
            f"at offset {batch.base_offset} broker {present} has {batch.describe()}, broker {missing} has no batch",
        )
    offset = min(a.base_offset, b.base_offset)
    if a.base_offset != b.base_offset:
        (lo_broker, lo), (hi_broker, hi) = sorted(((broker_a, a), (broker_b, b)), key=lambda x: x[1].base_offset)
        if hi.base_offset > lo.last_offset:
            return offset, (
                f"at offset {offset} broker {lo_broker} has {lo.describe()}, broker {hi_broker} has no batch "
                f"(its next is {hi.describe()})"
            )
        return offset, (
            f"at offset {offset} broker {broker_a} has {a.describe()} and broker {broker_b} has {b.describe()}"
        )
    return offset, (
        f"at offset {offset} broker {broker_a} has {a.describe()} and broker {broker_b} has {b.describe()}; "
        f"they first differ at {_first_difference(a.data, b.data)}"
    )


def _first_difference(a: bytes, b: bytes) -> str:
    """Where two batches first differ: the byte and the header field (past
    the CRC too when the CRC differs, since it differs whenever the rest does)."""

    def where(start: int) -> int | None:
        at = next((i for i, (x, y) in enumerate(zip(a[start:], b[start:]), start) if x != y), None)
        return at if at is not None or len(a) == len(b) else min(len(a), len(b))

    def name(i: int) -> str:
        return f"byte {i} of the batch (" + next((n for lo, hi, n in _FIELDS if lo <= i < hi), "records") + ")"

    first = where(0)
    if first is not None and 17 <= first < 21:
        later = where(21)
        if later is not None:
            return f"{name(first)}, and past it at {name(later)}"
    return name(first)


def compare(
    log_dirs_by_broker: Mapping,
    topic: str,
    partition: int,
    high_watermark: int,
    *,
    start: int | None = None,
    contiguous: bool = True,
) -> list[DiskBatch]:
    """Check every replica's files and that all hold the same bytes below
    ``high_watermark``; the batches there (the first broker's), or
    ReplicaFormatError / ReplicasDiffer."""
    replicas = read_replicas(log_dirs_by_broker, topic, partition, contiguous=contiguous)
    problem = first_difference(replicas, high_watermark, start)
    if problem is not None:
        raise ReplicasDiffer(f"{topic}-{partition}: {problem}")
    return next(iter(replicas.values())).below(high_watermark, start)
