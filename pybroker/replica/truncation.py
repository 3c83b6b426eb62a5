"""Where a follower cuts its log when it differs from its leader's (KIP-101,
KIP-279). Pure: epoch entries and offsets in, offsets out.

Every batch carries the epoch of the leader that wrote it, and both logs
keep an epoch cache: (epoch, start offset) entries, the latest epoch
running to the log end. Two replicas that hold the same epoch hold the
same records up to where the shorter of them ends that epoch, because one
leader wrote them. So when the leader says "my log diverges from yours
after epoch E ending at L" (a Fetch's DivergingEpoch, or an
OffsetForLeaderEpoch answer), the follower:

* finds its own largest epoch at or below E and where that epoch ends;
* if it is E itself, the logs agree up to min(its end, L): truncate there
  and fetch on (``complete``);
* if it is an older epoch, the follower never saw E: truncate to the end
  of that older epoch, which both logs certainly share no further, and
  ask again with it (KIP-279: after fast leader changes one round trip
  may not find the common point);
* if it has no epoch at or below E, nothing of its own tells it more than
  the leader's offset: truncate to min(L, its log end).

The high watermark plays no part: truncating to it alone is what lost
acknowledged records or let logs diverge before KIP-101.

Offsets out of the leader's range (Kafka's
AbstractFetcherThread.fetchOffsetAndTruncate): a follower past the
leader's log end (an unclean election) truncates to it; one below the
leader's log start starts over, empty, at that start.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import NamedTuple

UNDEFINED = -1


class Truncation(NamedTuple):
    """Cut the log at ``offset`` (nothing to do when it is at or past the
    log end); ``complete`` False: ask the leader again afterwards."""

    offset: int
    complete: bool


def epoch_end(entries: list[tuple[int, int]], epoch: int, log_end: int) -> tuple[int, int]:
    """(the largest epoch <= ``epoch`` known to ``entries``, where it ends),
    as an epoch cache answers OffsetForLeaderEpoch: the latest epoch ends at
    the log end, the others where the next begins. An epoch below every
    entry answers itself and the first entry's start (its records are
    gone); an epoch above the latest one, or none, (-1, -1)."""
    if epoch == UNDEFINED or not entries:
        return UNDEFINED, UNDEFINED
    if epoch == entries[-1][0]:
        return epoch, log_end
    higher = bisect_right(entries, epoch, key=_epoch)
    if higher == len(entries):
        return UNDEFINED, UNDEFINED
    if higher == 0:
        return epoch, entries[0][1]
    return entries[higher - 1][0], entries[higher][1]


def last_fetched_epoch(entries: list[tuple[int, int]], log_end: int) -> int:
    """The epoch of the log's last batch: the latest entry that starts
    below the log end (-1 for none). An entry at the log end is an epoch
    this replica led without writing, not one of its batches."""
    for epoch, start in reversed(entries):
        if start < log_end:
            return epoch
    return UNDEFINED


def diverges(leader_epoch_end: tuple[int, int], last_fetched: int, fetch_offset: int) -> bool:
    """The leader's side (Kafka's Partition.readRecords): the follower's
    last fetched epoch ends on the leader at ``leader_epoch_end``; its log
    diverges when the leader never had that epoch (the answer is an older
    one) or ended it before the follower's log end."""
    epoch, end = leader_epoch_end
    return epoch < last_fetched or end < fetch_offset


def truncation_point(entries: list[tuple[int, int]], log_end: int, leader_epoch: int, leader_end: int) -> Truncation:
    """Where to cut a log of ``entries`` ending at ``log_end`` whose leader
    answered (``leader_epoch``, ``leader_end``) for it (see the module
    docstring); Kafka's AbstractFetcherThread.getOffsetTruncationState."""
    if leader_end == UNDEFINED:
        # The leader cannot place the epoch asked for: nothing tells where
        # the logs part, so nothing is cut (the next Fetch checks again).
        return Truncation(log_end, True)
    if leader_epoch == UNDEFINED:
        return Truncation(min(leader_end, log_end), True)
    ours_epoch, ours_end = epoch_end(entries, leader_epoch, log_end)
    if ours_end == UNDEFINED:
        return Truncation(min(leader_end, log_end), True)
    if ours_epoch != leader_epoch:
        return Truncation(min(ours_end, log_end), False)
    return Truncation(min(ours_end, leader_end, log_end), True)


class OutOfRange(NamedTuple):
    """What a follower whose fetch offset the leader refused does: cut its
    log at ``truncate_to`` (-1: keep it), or with ``start_over`` drop it
    all and restart empty at ``truncate_to``."""

    truncate_to: int
    start_over: bool


def out_of_range(log_end: int, leader_start: int, leader_end: int) -> OutOfRange:
    """Kafka's fetchOffsetAndTruncate: past the leader's end, truncate to
    it; below the leader's start, start over there; otherwise (the leader
    moved on meanwhile) fetch again from where the log ends."""
    if leader_end < log_end:
        return OutOfRange(leader_end, False)
    if leader_start > log_end:
        return OutOfRange(leader_start, True)
    return OutOfRange(UNDEFINED, False)


def _epoch(entry: tuple[int, int]) -> int:
    return entry[0]
