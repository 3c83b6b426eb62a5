"""Log compaction (``cleanup.policy=compact``, alone or with ``delete``): the
cleaner of one partition log, after Apache Kafka's LogCleaner.

Theory of operation
-------------------
The log splits at ``log.cleaner_offset`` (Kafka's cleaner-offset checkpoint)
into a *clean* head, already deduplicated, and a *dirty* tail. A pass:

1. Bounds the work (``cleanable_range``). The dirty range runs from the
   cleaner offset to the first uncleanable offset: the smallest of the active
   segment's base, the high watermark (the last stable offset once
   transactions exist) and the base of the first dirty segment holding a
   timestamp newer than ``now - min.compaction.lag.ms``; like Kafka, that
   offset is rounded down to the base of the segment holding it. The pass
   runs when ``dirty bytes / (clean + dirty bytes)`` exceeds
   ``min.cleanable.dirty.ratio`` (strictly, as Kafka), or some dirty segment's
   first batch is older than ``now - max.compaction.lag.ms``, or when forced.
2. Maps every key of the dirty range to its last offset (a plain dict, one
   entry per distinct key; see "Memory" below).
3. Rewrites every segment from the start of the log to the end of the mapped
   range, in groups that fit one segment (``segment.bytes``, the index size,
   int32 relative offsets), each group into one ``.cleaned`` segment. A
   record stays when it has a key, no later offset of that key is mapped, and
   it has a value or its tombstone is still inside the delete horizon.
   Batches whose records all stay are copied byte for byte; the others are
   rebuilt with the same base offset, last offset delta, producer id, epoch
   and base sequence, leader epoch, timestamp type and codec, the kept
   records keeping their offsets. Offsets therefore never change, and a read
   at a removed offset gets the next batch that survived.
4. Swaps each cleaned segment in for its group (``PartitionLog.replace_segments``:
   ``.cleaned`` -> ``.swap`` -> delete the old ones -> final names, finished
   or discarded by the log on open) and moves the cleaner offset to the end
   of the mapped range.

Threading contract
------------------
``prepare(log, now_ms)`` does steps 1-3: it only reads closed segments and
writes (and fsyncs) ``.cleaned`` files, so it may run in a worker thread while
the owner keeps appending to the active segment, rolling, reading and moving
the high watermark. ``commit(log, plan)`` does step 4 and must run on the
thread that owns the log. Between the two the owner must not run retention,
``delete_records``, truncation or another cleaning pass on that log: they
delete or change the segments the plan was built from. ``commit`` checks
that every segment it read is still a closed segment of the log with the
same size and, if not, throws the plan away (``discard``) and returns None;
that check is a safety net, not a licence. ``clean`` runs both in the calling
thread.

Decisions
---------
* Delete horizon (KIP-534). The first pass that keeps a tombstone rewrites its
  batch with the delete-horizon attribute and ``base_timestamp = now +
  delete.retention.ms`` (record timestamps are unchanged: their deltas are
  re-based). A tombstone is kept while ``now < horizon``; a later pass drops
  it. Batches past the end of the mapped range are copied untouched, so a
  tombstone's horizon starts when it is first cleaned, not when a pass
  happens to copy it. ``CleanResult.delete_horizon_ms`` tells the caller when
  a forced pass could next drop a tombstone: like Kafka, a log with no new
  dirty bytes is not cleaned by the ratio rule alone.
* Null keys. A producer cannot write them to a compacted topic (the broker
  rejects them), so they only exist if the topic was switched to compact
  later. Like Kafka's cleaner, a pass drops keyless records in the range it
  rewrites (past the mapped range they stay).
* Transactions. The dirty range ends at the last stable offset, so every
  transactional batch a pass reads belongs to a decided transaction. The
  batches of aborted transactions (found in every segment's ``.txnindex``,
  the active one's too: an abort marker past the range still decides data
  in it) are removed, and their records neither enter the offset map nor
  shadow earlier records of their keys. Control batches (markers) are
  copied untouched, always: Kafka drops a marker once its transaction has
  no data left and its delete horizon passed; keeping them costs a few
  dozen bytes per transaction and is always safe. A cleaned segment keeps
  the aborted-transaction entries of the segments it replaces.
* Empty batches. A batch that loses all its records is dropped, except (as
  an empty batch header keeping its offsets, producer id, epoch and base
  sequence, as Kafka's ``RETAIN_EMPTY``) the last data batch of each producer
  id, so the producer's last sequence and epoch survive; and the last batch of
  every group, so a cleaned segment always ends where the segments it
  replaces ended. Kafka keeps only the round's last batch; we keep every
  group's because ``PartitionLog`` finishes an interrupted swap by deleting
  the old segments whose base lies below the swap segment's end: a group
  whose tail vanished would let an old segment survive beside its
  replacement. Which batch is a producer's last comes from the caller
  (``producer_last_offsets``, from the producer state) or, by default, from
  the rewritten range itself (a superset of Kafka's rule: at most one empty
  header per producer id too many).

Memory
------
The offset map is a dict from key bytes to offset: about ``len(key) + 100``
bytes per distinct key in CPython. ``max_keys`` bounds it (Kafka bounds its
map by ``log.cleaner.dedupe.buffer.size``, 24 bytes a key); when the dirty
range holds more keys, a pass maps a prefix of it, ending at a batch
boundary, rewrites only up to there and leaves the rest dirty for the next
pass. Everything else is streamed: 1 MiB reads, 1 MiB writes, one batch
decoded at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from ..protocol.compression import Compression
from ..protocol.errors import CorruptRecordError
from ..protocol.record_batch import (
    HEADER,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MIN_BATCH_LENGTH,
    RecordBatch,
    split_batches,
)
from ..protocol.records import LOG_APPEND_TIME, NewRecord, build_batch
from .log import PartitionLog
from .segment import BatchInfo, LogSegment

DEFAULT_MAX_KEYS = 1_000_000
INT32_MAX = 0x7FFFFFFF
_READ_CHUNK = 1 << 20
_WRITE_CHUNK = 1 << 20

# Fields of protocol.record_batch.HEADER.
_H_BASE, _H_LENGTH, _H_ATTRIBUTES, _H_LAST_DELTA, _H_PRODUCER = 0, 1, 5, 6, 9
_CONTROL_BIT = 0x20


@dataclass(frozen=True, slots=True)
class CleanableRange:
    """What a pass would clean now, and Kafka's numbers for deciding."""

    first_dirty_offset: int
    first_uncleanable_offset: int  # a segment base (or the first dirty offset): a pass ends at or before it
    clean_bytes: int
    cleanable_bytes: int
    needs_compaction_now: bool  # max.compaction.lag.ms passed for some dirty segment

    @property
    def dirty_ratio(self) -> float:
        total = self.clean_bytes + self.cleanable_bytes
        return self.cleanable_bytes / total if total else 0.0


@dataclass(frozen=True, slots=True)
class CleanResult:
    first_dirty_offset: int
    end_offset: int  # the new cleaner offset
    bytes_before: int  # of the segments replaced
    bytes_after: int  # of their replacements
    records_removed: int
    segments_rewritten: int  # old segments replaced
    delete_horizon_ms: int | None  # earliest horizon of a kept tombstone, None if none


@dataclass(slots=True)
class _Group:
    old: list[LogSegment]
    new: LogSegment
    records_removed: int

    @property
    def bytes_before(self) -> int:
        return sum(s.size for s in self.old)


@dataclass(slots=True)
class CleanPlan:
    """The output of ``prepare``: cleaned segments waiting to be swapped in."""

    first_dirty_offset: int
    end_offset: int
    groups: list[_Group]
    read: list[tuple[LogSegment, int]]  # every segment read, with its size then
    delete_horizon_ms: int | None
    done: bool = field(default=False)


# -- deciding ------------------------------------------------------------------


def _next_bases(segments: list[LogSegment]) -> list[int]:
    """Where each segment's offsets end: the next segment's base, or its own
    next offset for the last one."""
    return [s.base_offset for s in segments[1:]] + [segments[-1].next_offset]


def _overlapping(segments: list[LogSegment], lo: int, hi: int) -> list[LogSegment]:
    """Segments holding some offset in [lo, hi)."""
    ends = _next_bases(segments)
    return [s for s, end in zip(segments, ends) if s.base_offset < hi and end > lo]


def _segment_of(segments: list[LogSegment], offset: int) -> LogSegment:
    found = segments[0]
    for seg in segments:
        if seg.base_offset > offset:
            break
        found = seg
    return found


def _range_of(log: PartitionLog, segments: list[LogSegment], now_ms: int) -> CleanableRange:
    cfg = log.config
    active = segments[-1]
    start = log.log_start_offset
    first_dirty = log.cleaner_offset
    if first_dirty < start or first_dirty > active.next_offset:
        first_dirty = start  # an invalid checkpoint: clean everything, as Kafka
    closed = segments[:-1]
    uncleanable = min(active.base_offset, log.last_stable_offset)
    lag = max(cfg.min_compaction_lag_ms, 0)
    dirty_closed = _overlapping(segments, first_dirty, active.base_offset) if closed else []
    if lag > 0:
        for seg in dirty_closed:
            if seg.max_timestamp > now_ms - lag:
                uncleanable = min(uncleanable, seg.base_offset)
                break
    uncleanable = max(uncleanable, first_dirty)
    # Whole segments only: round down to the base of the segment holding it.
    uncleanable = _segment_of(segments, uncleanable).base_offset
    clean_bytes = sum(s.size for s in segments if s.base_offset < first_dirty)
    cleanable_bytes = sum(s.size for s in _overlapping(segments, min(first_dirty, uncleanable), uncleanable))
    max_lag = max(cfg.max_compaction_lag_ms, 0)
    first_times = [s.first_batch_timestamp for s in dirty_closed if (s.first_batch_timestamp or 0) > 0]
    due = bool(first_times) and min(first_times) < now_ms - max_lag
    return CleanableRange(first_dirty, max(uncleanable, first_dirty), clean_bytes, cleanable_bytes, due)


def cleanable_range(log: PartitionLog, now_ms: int) -> CleanableRange:
    """Kafka's cleanableOffsets and dirty ratio for ``log`` at ``now_ms``."""
    return _range_of(log, list(log.segments), now_ms)


def should_clean(log: PartitionLog, rng: CleanableRange) -> bool:
    if rng.cleanable_bytes <= 0:
        return False
    return rng.needs_compaction_now or rng.dirty_ratio > log.config.min_cleanable_dirty_ratio


# -- reading -------------------------------------------------------------------


def _batches(seg: LogSegment, position: int = 0) -> Iterator[tuple[int, RecordBatch]]:
    """(position, batch) of each batch of a closed segment from ``position``."""
    size = seg.size
    while position < size:
        data = seg.read_at(position, min(_READ_CHUNK, size - position))
        batches, _ = split_batches(data)
        if not batches:  # one batch larger than a chunk
            if len(data) < LOG_OVERHEAD:
                raise CorruptRecordError(f"{seg.path}: {len(data)} stray bytes at position {position}")
            length = LOG_OVERHEAD + int.from_bytes(data[8:12], "big", signed=True)
            if position + length > size:
                raise CorruptRecordError(f"{seg.path}: batch at position {position} runs past the end")
            batches = [RecordBatch(memoryview(seg.read_at(position, length)))]
        for batch in batches:
            yield position, batch
            position += batch.size_in_bytes


def _headers(seg: LogSegment) -> Iterator[tuple]:
    """The header fields of each batch of a closed segment, read alone."""
    position, size = 0, seg.size
    while position + HEADER_SIZE <= size:
        h = HEADER.unpack(seg.read_at(position, HEADER_SIZE))
        if h[_H_LENGTH] < MIN_BATCH_LENGTH:
            raise CorruptRecordError(f"{seg.path}: batch length {h[_H_LENGTH]} at position {position}")
        yield h
        position += h[_H_LENGTH] + LOG_OVERHEAD


def _aborted_spans(segments: list[LogSegment]) -> dict[int, list[tuple[int, int]]]:
    """producer id -> [(first offset, marker offset)] of its aborted transactions."""
    spans: dict[int, list[tuple[int, int]]] = {}
    for seg in segments:
        for txn in seg.txn_index.entries:
            spans.setdefault(txn.producer_id, []).append((txn.first_offset, txn.last_offset))
    return spans


def _aborted(spans: dict[int, list[tuple[int, int]]], batch: RecordBatch) -> bool:
    if not spans or not batch.is_transactional or batch.is_control:
        return False
    base = batch.base_offset
    return any(first <= base < last for first, last in spans.get(batch.producer_id, ()))


def _build_offset_map(
    segments: list[LogSegment], start: int, end: int, max_keys: int, aborted: dict | None = None
) -> tuple[dict[bytes, int], int]:
    """key -> last offset over the batches in [start, end); stops before the
    batch that would take the map past ``max_keys`` (never before the first),
    and then returns that batch's base as the new end."""
    offsets: dict[bytes, int] = {}
    for seg in _overlapping(segments, start, end):
        _, position = seg.offset_index.lookup(start) if start > seg.base_offset else (0, 0)
        for _, batch in _batches(seg, position):
            if batch.last_offset < start:
                continue
            if batch.base_offset >= end:
                return offsets, end
            if batch.is_control or _aborted(aborted, batch):
                continue
            keyed = [(r.key, r.offset) for r in batch.records() if r.key is not None and r.offset >= start]
            if offsets:
                new = {k for k, _ in keyed if k not in offsets}
                if len(offsets) + len(new) > max_keys:
                    return offsets, batch.base_offset
            for key, offset in keyed:
                offsets[key] = offset
    return offsets, end


def _group_by_size(segments: list[LogSegment], segment_bytes: int, index_bytes: int) -> list[list[LogSegment]]:
    """Consecutive segments whose data, offset index and time index each fit
    one segment, and whose offsets fit int32 relative to the first base
    (Kafka's groupSegmentsBySize)."""
    groups: list[list[LogSegment]] = []
    for seg in segments:
        group = groups[-1] if groups else None
        if group is not None:
            fits = (
                sum(s.size for s in group) + seg.size <= segment_bytes
                and sum(s.offset_index.size_in_bytes for s in group) + seg.offset_index.size_in_bytes <= index_bytes
                and sum(s.time_index.size_in_bytes for s in group) + seg.time_index.size_in_bytes <= index_bytes
                and (seg.size == 0 or seg.next_offset - 1 - group[0].base_offset <= INT32_MAX)
            )
            if fits:
                group.append(seg)
                continue
        groups.append([seg])
    return groups


# -- writing -------------------------------------------------------------------


class _Writer:
    """Buffers batches for a ``.cleaned`` segment. Rebuilt batches can grow
    and merged segments need an index entry more per boundary, so a group
    that fits by Kafka's rule may want more index entries than fit: the
    segment then leaves the index sparser (LogSegment skips entries when an
    index is full), which costs lookups a longer scan, nothing else."""

    def __init__(self, seg: LogSegment):
        self.seg = seg
        self.buffer = bytearray()
        self.infos: list[BatchInfo] = []

    def add(self, data, base: int, last: int, max_timestamp: int) -> None:
        self.infos.append(BatchInfo(len(self.buffer), base, last, len(data), max_timestamp))
        self.buffer += data
        if len(self.buffer) >= _WRITE_CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.infos:
            self.seg.append(self.buffer, self.infos)
            self.buffer = bytearray()
            self.infos = []


def _rebuild(batch: RecordBatch, kept, horizon: int | None) -> bytes:
    base = batch.base_offset
    log_append = batch.timestamp_type == LOG_APPEND_TIME
    return build_batch(
        [NewRecord(r.key, r.value, r.headers, r.timestamp, r.offset - base) for r in kept],
        base_offset=base,
        compression=batch.compression,
        timestamp_type=batch.timestamp_type,
        producer_id=batch.producer_id,
        producer_epoch=batch.producer_epoch,
        base_sequence=batch.base_sequence,
        is_transactional=batch.is_transactional,
        has_delete_horizon=horizon is not None,
        partition_leader_epoch=batch.partition_leader_epoch,
        base_timestamp=horizon,
        max_timestamp=batch.max_timestamp if log_append else None,
        last_offset_delta=batch.last_offset_delta,
    )


def _empty_header(batch: RecordBatch) -> bytes:
    """What Kafka's DefaultRecordBatch.writeEmptyHeader writes."""
    return build_batch(
        [],
        base_offset=batch.base_offset,
        compression=Compression.NONE,
        timestamp_type=batch.timestamp_type,
        producer_id=batch.producer_id,
        producer_epoch=batch.producer_epoch,
        base_sequence=batch.base_sequence,
        is_transactional=batch.is_transactional,
        is_control=batch.is_control,
        partition_leader_epoch=batch.partition_leader_epoch,
        base_timestamp=batch.max_timestamp,
        max_timestamp=batch.max_timestamp,
        last_offset_delta=batch.last_offset_delta,
    )


@dataclass(slots=True)
class _Pass:
    offsets: dict[bytes, int]
    end: int
    now_ms: int
    delete_retention_ms: int
    keep_empty: set[int]  # last offsets of batches kept even when emptied
    aborted: dict = field(default_factory=dict)  # producer id -> spans of its aborted transactions
    delete_horizon_ms: int | None = None

    def note_horizon(self, horizon: int) -> None:
        if self.delete_horizon_ms is None or horizon < self.delete_horizon_ms:
            self.delete_horizon_ms = horizon

    def filter(self, batch: RecordBatch, retain_empty: bool) -> tuple[bytes | memoryview | None, bool, int]:
        """(bytes to write or None, whether they are the batch unchanged,
        records removed). ``retain_empty`` keeps an emptied batch's header."""
        if batch.base_offset >= self.end or batch.is_control:
            return batch.view, True, 0
        if batch.record_count == 0:  # emptied by an earlier pass
            return (batch.view, True, 0) if retain_empty else (None, False, 0)
        if _aborted(self.aborted, batch):
            return (_empty_header(batch) if retain_empty else None), False, batch.record_count
        horizon = batch.base_timestamp if batch.has_delete_horizon else None
        keep_tombstones = horizon is None or self.now_ms < horizon
        records = list(batch.records())
        offsets = self.offsets
        kept = [
            r
            for r in records
            if r.key is not None
            and r.offset >= offsets.get(r.key, -1)
            and (r.value is not None or keep_tombstones)
        ]
        removed = len(records) - len(kept)
        if not kept:
            return (_empty_header(batch) if retain_empty else None), False, removed
        if any(r.value is None for r in kept):
            if horizon is None:
                horizon = self.now_ms + self.delete_retention_ms
                self.note_horizon(horizon)
                return _rebuild(batch, kept, horizon), False, removed
            self.note_horizon(horizon)
        if not removed:
            return batch.view, True, 0
        return _rebuild(batch, kept, horizon), False, removed


def _producer_tails(segments: list[LogSegment]) -> set[int]:
    """Last offset of the last data batch of each producer id in ``segments``."""
    last: dict[int, int] = {}
    for seg in segments:
        for h in _headers(seg):
            if h[_H_PRODUCER] >= 0 and not h[_H_ATTRIBUTES] & _CONTROL_BIT:
                last[h[_H_PRODUCER]] = h[_H_BASE] + h[_H_LAST_DELTA]
    return set(last.values())


def _clean_group(log: PartitionLog, group: list[LogSegment], work: _Pass) -> _Group | None:
    """Write the cleaned copy of ``group``; None when it would be the single
    segment unchanged (nothing to swap)."""
    new = log.new_cleaned_segment(group[0].base_offset)
    try:
        writer = _Writer(new)
        tails = [s.next_offset - 1 for s in group if s.size]
        tail = tails[-1] if tails else None
        changed = len(group) > 1
        removed = 0
        for seg in group:
            for _, batch in _batches(seg):
                last = batch.last_offset
                out, same, dropped = work.filter(batch, last == tail or last in work.keep_empty)
                removed += dropped
                changed = changed or not same
                if out is not None:
                    writer.add(out, batch.base_offset, batch.last_offset, batch.max_timestamp)
        writer.flush()
        for seg in group:
            for txn in seg.txn_index.entries:
                new.txn_index.append(txn)
        if not changed:
            new.delete()
            return None
        new.on_roll()
        new.flush()  # here, so the owner's swap finds nothing left to write
        return _Group(group, new, removed)
    except BaseException:
        new.delete()
        raise


# -- the pass ------------------------------------------------------------------


def prepare(
    log: PartitionLog,
    now_ms: int,
    *,
    force: bool = False,
    max_keys: int = DEFAULT_MAX_KEYS,
    producer_last_offsets: Mapping[int, int] | None = None,
) -> CleanPlan | None:
    """Build the offset map and write the cleaned segments; None when the log
    is not compacted or not due (``force`` skips the dirty-ratio and
    max-lag test, not the bounds). Safe in a worker thread: see the module
    docstring. ``producer_last_offsets`` maps producer id -> last offset of its
    last data batch, from the producer state."""
    if not log.config.compact:
        return None
    segments = list(log.segments)  # the owner may roll meanwhile
    if len(segments) < 2:
        return None
    rng = _range_of(log, segments, now_ms)
    if not force and not should_clean(log, rng):
        return None
    closed = segments[:-1]
    aborted = _aborted_spans(segments)
    offsets, end = _build_offset_map(
        closed, rng.first_dirty_offset, rng.first_uncleanable_offset, max(max_keys, 1), aborted
    )
    to_clean = [s for s in closed if s.base_offset < end]
    if not to_clean:
        return None
    if producer_last_offsets is None:
        keep_empty = _producer_tails(to_clean)
    else:
        keep_empty = set(producer_last_offsets.values())
    cfg = log.config
    work = _Pass(offsets, end, now_ms, cfg.delete_retention_ms, keep_empty, aborted)
    groups: list[_Group] = []
    try:
        for group in _group_by_size(to_clean, cfg.segment_bytes, cfg.segment_index_bytes):
            cleaned = _clean_group(log, group, work)
            if cleaned is not None:
                groups.append(cleaned)
    except BaseException:
        for g in groups:
            g.new.delete()
        raise
    read = [(s, s.size) for s in to_clean]
    return CleanPlan(rng.first_dirty_offset, end, groups, read, work.delete_horizon_ms)


def discard(plan: CleanPlan) -> None:
    """Delete the cleaned segments of a plan that will not be committed."""
    for g in plan.groups:
        g.new.delete()
    plan.done = True


def commit(log: PartitionLog, plan: CleanPlan) -> CleanResult | None:
    """Swap the cleaned segments in and move the cleaner offset; owner thread
    only. None (and the plan discarded) if the log changed under the plan.
    An exception from the swap (an I/O error) leaves the in-memory log
    behind its files: close it and reopen it, which finishes or undoes the
    interrupted swap."""
    if plan.done:
        raise ValueError("this clean plan was already committed or discarded")
    closed = {id(s) for s in log.segments[:-1]}
    if any(id(seg) not in closed or seg.size != size for seg, size in plan.read):
        discard(plan)
        return None
    before = after = removed = rewritten = 0
    for i, g in enumerate(plan.groups):
        try:
            size_before = g.bytes_before
            log.replace_segments(g.old, g.new)
        except BaseException:
            for rest in plan.groups[i + 1 :]:
                rest.new.delete()
            plan.done = True
            raise
        before += size_before
        after += g.new.size
        removed += g.records_removed
        rewritten += len(g.old)
    log.cleaner_offset = plan.end_offset
    plan.done = True
    return CleanResult(
        plan.first_dirty_offset, plan.end_offset, before, after, removed, rewritten, plan.delete_horizon_ms
    )


def clean(
    log: PartitionLog,
    now_ms: int,
    *,
    force: bool = False,
    max_keys: int = DEFAULT_MAX_KEYS,
    producer_last_offsets: Mapping[int, int] | None = None,
) -> CleanResult | None:
    """One whole pass in the calling thread: ``prepare`` then ``commit``."""
    plan = prepare(log, now_ms, force=force, max_keys=max_keys, producer_last_offsets=producer_last_offsets)
    if plan is None:
        return None
    return commit(log, plan)
