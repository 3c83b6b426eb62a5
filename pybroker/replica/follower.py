"""A follower partition's side of replication, one step at a time; no I/O.

The fetcher (fetcher.py) asks the leader and calls these with what it
answered; the deterministic replication tests call the same functions
with the leader's answers taken straight from a leader Partition
(replica_fetch.py), so both exercise one path.

* ``position``: what the follower's Fetch says of its log — the fetch
  offset is the log end, the last fetched epoch the epoch of its last
  batch (-1 when empty), its log start, and the leader epoch it follows.
* ``append_fetched``: the leader's batches appended as they are (offsets
  and epochs kept; storage checks each batch's CRC and nothing more, and
  updates the producer state and the epoch cache), then the follower's
  high watermark = the leader's, clamped to its own log end, and its log
  start moved up to the leader's (segments below it deleted).
* ``truncate_diverging``: the leader answered DivergingEpoch (or, for a
  log with data and no epoch cache, OffsetForLeaderEpoch): cut the log
  where truncation.py says. Storage's truncate_to also cuts the epoch
  cache and rebuilds the producer state from what remains.
* ``recover_out_of_range``: the leader refused the fetch offset; cut to
  the leader's log end, or start over empty at its log start.
"""

from __future__ import annotations

import enum
import logging
from typing import NamedTuple

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.record_batch import RecordBatch, split_batches
from pybroker.storage.log import KafkaStorageError

from .manager import Origin
from .partition import storage_error
from .truncation import UNDEFINED, Truncation, last_fetched_epoch, out_of_range, truncation_point

log = logging.getLogger("pybroker.replica")


class Position(NamedTuple):
    fetch_offset: int
    last_fetched_epoch: int
    log_start_offset: int
    current_leader_epoch: int


def position(part) -> Position:
    plog = part.log
    end = plog.log_end_offset
    latest = plog.epochs.latest_entry
    if latest is None:
        epoch = UNDEFINED
    elif latest[1] < end:
        epoch = latest[0]
    else:  # an epoch led here without a batch: not one this log holds
        epoch = last_fetched_epoch(plog.epochs.entries, end)
    return Position(end, epoch, plog.log_start_offset, part.info.leader_epoch)


def durable(part) -> bool:
    """Whether what this follower appends must be fsynced before it
    reports it to the leader (the durable high watermark: more than one
    replica, and the topic without write.caching)."""
    return len(part.info.replicas) > 1 and not part.log.config.write_caching


def needs_epoch_check(part) -> bool:
    """A log with data but no epoch cache (lost with a clean shutdown, say):
    its last fetched epoch would be -1, which the leader cannot check, so
    the follower asks OffsetForLeaderEpoch for its last batch's epoch
    first."""
    plog = part.log
    return plog.log_end_offset > plog.log_start_offset and plog.epochs.latest_entry is None


def epoch_to_check(part) -> int:
    """The epoch to ask OffsetForLeaderEpoch for when the cache is empty."""
    try:
        return part.log.last_batch_epoch()
    except KafkaStorageError as exc:
        raise storage_error(exc) from None


def append_fetched(replicas, part, records, leader_hw: int, leader_log_start: int, now_ms: int) -> int:
    """Append the leader's ``records`` (whole batches; a partial one at the
    end is dropped, as a consumer drops it) and follow its high watermark
    and log start. Returns the bytes appended. Raises KafkaError (an
    offline log: KAFKA_STORAGE_ERROR) or CorruptRecordError (a batch whose
    CRC does not match), appending nothing."""
    n = 0
    if records is not None and len(records):
        batches, rest = split_batches(records)
        if batches:
            _start_at_first_batch(part, batches[0])
            whole = memoryview(records)[: len(records) - rest]
            # One append for the whole response: the log takes the batches
            # in one view, as they continue its offsets.
            replicas.append(part.topic, part.index, RecordBatch(whole), now=now_ms, acks=1, origin=Origin.REPLICATION)
            n = len(whole)
    plog = part.log
    try:
        if leader_hw >= 0:
            plog.set_high_watermark(min(leader_hw, plog.log_end_offset))
        if leader_log_start > plog.log_start_offset:
            plog.advance_log_start(leader_log_start)
    except KafkaStorageError as exc:
        raise storage_error(exc) from None
    return n


def _start_at_first_batch(part, first) -> None:
    """An empty log starting inside the leader's first batch (the leader's
    log start, moved by DeleteRecords, fell inside it): restart the log at
    that batch's base so it can be appended whole; the leader's log start
    then moves this one's back up (Kafka's follower does the same on
    UnexpectedAppendOffsetException)."""
    plog = part.log
    end = plog.log_end_offset
    if end == plog.log_start_offset and first.base_offset < end <= first.last_offset:
        try:
            plog.truncate_fully(first.base_offset)
        except KafkaStorageError as exc:
            raise storage_error(exc) from None


def truncate(part, offset: int, why: str) -> None:
    """Cut the follower's log at ``offset`` (nothing when at or past its end
    but stale epoch entries there)."""
    plog = part.log
    end, hw = plog.log_end_offset, plog.high_watermark
    try:
        plog.truncate_to(offset)
    except KafkaStorageError as exc:
        raise storage_error(exc) from None
    if plog.log_end_offset < end:
        log.info(
            "%s-%d: truncated from %d to %d (%s)%s",
            part.topic,
            part.index,
            end,
            plog.log_end_offset,
            why,
            f", below the high watermark {hw}" if plog.log_end_offset < hw else "",
        )


def truncate_diverging(part, leader_epoch: int, leader_end: int) -> Truncation:
    """The leader's (epoch, end offset) after which this log diverges: cut
    where truncation.py says; ``complete`` False when the leader must be
    asked again (the next Fetch does, with the new last fetched epoch)."""
    plog = part.log
    cut = truncation_point(plog.epochs.entries, plog.log_end_offset, leader_epoch, leader_end)
    truncate(part, cut.offset, f"diverging after epoch {leader_epoch} ending at {leader_end}")
    return cut


def truncate_without_epochs(part, leader_epoch: int, leader_end: int, asked: int) -> None:
    """The OffsetForLeaderEpoch answer for a log with no epoch cache, asked
    for its last batch's epoch ``asked``. A log whose batches carry no
    epoch at all (-1) can be placed by nothing but its high watermark:
    Kafka's rule for logs without epochs."""
    if asked == UNDEFINED:
        truncate(part, part.log.high_watermark, "no leader epochs in the log")
        return
    truncate_diverging(part, leader_epoch, leader_end)


def recover_out_of_range(part, leader_start: int, leader_end: int) -> None:
    """The leader refused the fetch offset (Kafka's fetchOffsetAndTruncate):
    past its log end, truncate to it; below its log start, start over there."""
    plog = part.log
    step = out_of_range(plog.log_end_offset, leader_start, leader_end)
    if step.start_over:
        log.info(
            "%s-%d: log end %d is below the leader's log start %d: starting over there",
            part.topic,
            part.index,
            plog.log_end_offset,
            leader_start,
        )
        try:
            plog.truncate_fully(step.truncate_to)
        except KafkaStorageError as exc:
            raise storage_error(exc) from None
    elif step.truncate_to != UNDEFINED:
        truncate(part, step.truncate_to, f"past the leader's log end {leader_end}")


class Outcome(enum.Enum):
    APPENDED = "appended"  # records written (fsync them before the next Fetch)
    UP_TO_DATE = "up to date"  # nothing new; the offsets followed
    TRUNCATED = "truncated"  # diverged: cut, fetch again at once
    OUT_OF_RANGE = "out of range"  # ask the leader's log start and end
    REFUSED = "refused"  # an error: back off


def apply_answer(replicas, part, error: int, records, leader_hw: int, leader_log_start: int, diverging, now_ms: int):
    """What one partition of the leader's answer to a Fetch does here:
    ``diverging`` is the answer's (epoch, end offset), None if absent.
    Raises as append_fetched does."""
    if error == ErrorCode.NONE:
        if diverging is not None:
            truncate_diverging(part, diverging[0], diverging[1])
            return Outcome.TRUNCATED
        if append_fetched(replicas, part, records, leader_hw, leader_log_start, now_ms):
            return Outcome.APPENDED
        return Outcome.UP_TO_DATE
    if error == ErrorCode.OFFSET_OUT_OF_RANGE:
        return Outcome.OUT_OF_RANGE
    return Outcome.REFUSED
