"""Transaction markers: the commit or abort control batch a coordinator
writes to every partition of a transaction.

A partition this broker leads gets its marker appended here (``append``,
the same operation the WriteTxnMarkers handler runs for other
coordinators); another leader gets a WriteTxnMarkers request, every
leader at the same time. Either way the marker is appended with acks=-1
and the coordinator epoch, and ``write`` retries each partition until its
marker is committed, the partition is gone (its topic deleted), or the
partition refuses it for good: a newer producer epoch there (the
transaction was already ended by a fence) or a newer coordinator (this
one is a zombie, and stops).
A marker committed on a partition of ``__consumer_offsets`` completes
the transaction's offsets in the group coordinator.

One request at a time goes to each leader, and the markers of the
transactions that ended meanwhile go together in the next one, as
Kafka's marker channel drains its queue per broker; the leader appends
them all before it waits for any (``append_all``), so they share one
replication round instead of taking one each, in turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError, ProtocolError
from pybroker.protocol.messages.write_txn_markers_request import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
)
from pybroker.protocol.record_batch import RecordBatch
from pybroker.protocol.records import build_control_batch

from ..groups import OFFSETS_TOPIC, now_ms
from ..replica.link import LinkError
from ..replica.manager import Origin

log = logging.getLogger("pybroker.txn")

MARKER_TIMEOUT_MS = 30000  # Kafka's request.timeout.ms for its marker requests
RETRY_BACKOFF_S = 0.1
RETRY_BACKOFF_MAX_S = 1.0
# A refusal that will never change: the transaction is over there.
DONE_ERRORS = {ErrorCode.INVALID_PRODUCER_EPOCH, ErrorCode.PRODUCER_FENCED}
FENCED = ErrorCode.TRANSACTION_COORDINATOR_FENCED

TopicPartition = tuple[str, int]


class Markers:
    def __init__(self, replicas, metadata, groups, links=None):
        """``links(node) -> Link`` (cluster mode) reaches other leaders."""
        self.replicas = replicas
        self.metadata = metadata
        self.groups = groups
        self.links = links
        self._queued: dict[int, list[_Queued]] = {}  # leader -> markers for its next request
        self._turns: dict[int, trio.Lock] = {}  # leader -> one request at a time

    async def append(
        self, partitions: Iterable[TopicPartition], producer_id: int, epoch: int, commit: bool, coordinator_epoch: int
    ) -> dict[TopicPartition, ErrorCode]:
        """Append the marker to each partition this broker leads and wait
        until committed: the error per partition."""
        return (await self.append_all([(list(partitions), producer_id, epoch, commit, coordinator_epoch)]))[0]

    async def append_all(self, markers: list[tuple]) -> list[dict[TopicPartition, ErrorCode]]:
        """``append`` for several markers, each (partitions, producer id,
        producer epoch, commit, coordinator epoch): all appended first, then
        one wait until every one is committed. The errors per marker."""
        now = now_ms()
        results: list[dict[TopicPartition, ErrorCode]] = [{} for _ in markers]
        appended = []  # (which marker, partition, where it went)
        for i, (tps, producer_id, epoch, commit, coordinator_epoch) in enumerate(markers):
            for tp in tps:
                batch = RecordBatch(bytearray(build_control_batch(producer_id, epoch, commit, coordinator_epoch, now)))
                try:
                    appended.append((i, tp, self.replicas.append(*tp, batch, now=now, acks=-1, origin=Origin.COORDINATOR)))
                except KafkaError as exc:
                    results[i][tp] = ErrorCode(exc.code)
        if appended:
            failed = await self.replicas.until_committed([a for _, _, a in appended], MARKER_TIMEOUT_MS)
            for i, tp, a in appended:
                error = failed.get(a)
                results[i][tp] = ErrorCode.NONE if error is None else ErrorCode(error.code)
                if error is None and tp[0] == OFFSETS_TOPIC and self.groups is not None:
                    _, producer_id, _, commit, _ = markers[i]
                    self.groups.complete_txn(producer_id, commit, tp[1])
        return results

    async def write(
        self,
        partitions: Iterable[TopicPartition],
        producer_id: int,
        epoch: int,
        commit: bool,
        coordinator_epoch: int,
        still_ours: Callable[[], bool],
    ) -> bool:
        """Write every marker, retrying while ``still_ours()``; True when a
        newer coordinator fenced this one (the caller stops)."""
        left = set(partitions)
        backoff = RETRY_BACKOFF_S
        while left and still_ours():
            by_leader: dict[int, list[TopicPartition]] = {}
            for tp in sorted(left):
                leader = self._leader(tp)
                if leader is None:  # the topic was deleted: nothing to end there
                    left.discard(tp)
                elif leader >= 0:
                    by_leader.setdefault(leader, []).append(tp)
            results: dict[TopicPartition, ErrorCode] = {}
            marker = (producer_id, epoch, commit, coordinator_epoch)
            # Every leader at once, as Kafka's marker channel sends to each
            # broker: one after the other, a commit waited for the sum of
            # their replication rounds instead of the slowest.
            async with trio.open_nursery() as nursery:
                for leader, tps in by_leader.items():
                    nursery.start_soon(self._write_to, leader, tps, marker, results)
            for tp, error in results.items():
                if error == FENCED:
                    log.warning("marker for producer %d on %s-%d: a newer coordinator fenced this one",
                                producer_id, *tp)
                    return True
                if error == ErrorCode.NONE or error in DONE_ERRORS:
                    left.discard(tp)
                else:
                    log.info("marker for producer %d on %s-%d failed with %s; retrying",
                             producer_id, tp[0], tp[1], error.name)
            if left:
                await trio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_BACKOFF_MAX_S)
        return False

    async def _write_to(self, leader: int, tps: list, marker: tuple, results: dict) -> None:
        if leader == self.replicas.node_id or self.links is None:
            results.update(await self.append(tps, *marker))
        else:
            results.update(await self._send(leader, tps, marker))

    def _leader(self, tp: TopicPartition) -> int | None:
        """The partition's leader (-1: none now), None when it does not exist."""
        info = self.metadata.topic(tp[0])
        if info is None or tp[1] >= len(info.partitions):
            return None
        return info.partitions[tp[1]].leader

    async def _send(self, leader: int, tps: list, marker: tuple) -> dict[TopicPartition, ErrorCode]:
        """Ask ``leader`` to write ``marker`` to ``tps``: in the next request
        to it, with whatever other markers are waiting for that one."""
        entry = _Queued(tps, marker)
        queue = self._queued.setdefault(leader, [])
        queue.append(entry)
        try:
            # trio.Lock is fair: the waiters take their turns in order, and
            # a turn finds its marker sent already if an earlier one took it.
            async with self._turns.setdefault(leader, trio.Lock()):
                while entry.results is None:
                    await self._send_queued(leader)
        finally:
            if entry.results is None and entry in queue:
                queue.remove(entry)  # cancelled before it was sent
        return entry.results

    async def _send_queued(self, leader: int) -> None:
        """One WriteTxnMarkers to ``leader`` with the markers waiting for it,
        one per producer (the answer names each by its producer id)."""
        queue = self._queued.get(leader, [])
        batch: list[_Queued] = []
        later: list[_Queued] = []
        producers: set[int] = set()
        for entry in queue:
            if entry.marker[0] in producers:
                later.append(entry)
            else:
                producers.add(entry.marker[0])
                batch.append(entry)
        queue[:] = later  # in place: waiters hold this list
        answered = None
        try:
            answered = await self._call(leader, batch)
        finally:
            for entry in batch:
                if answered is None:
                    # No answer (the call failed, or this task was
                    # cancelled): asked again, as after a leader change.
                    entry.results = dict.fromkeys(entry.tps, ErrorCode.NOT_LEADER_OR_FOLLOWER)
                else:
                    pid = entry.marker[0]
                    entry.results = {
                        tp: answered.get((pid, *tp), ErrorCode.UNKNOWN_SERVER_ERROR) for tp in entry.tps
                    }

    async def _call(self, leader: int, batch: list[_Queued]) -> dict | None:
        """{(producer id, topic, partition): error} of the leader's answer,
        None when there was none."""
        request = WriteTxnMarkersRequest(markers=[_marker(e.tps, *e.marker) for e in batch])
        try:
            response = await self.links.call(leader, request, 1)
        except (OSError, LinkError, ProtocolError, trio.TooSlowError) as exc:  # retried like a leader change
            log.info("WriteTxnMarkers to broker %d failed: %s", leader, exc)
            return None
        return {
            (m.producer_id, topic.name, p.partition_index): ErrorCode(p.error_code)
            for m in response.markers
            for topic in m.topics
            for p in topic.partitions
        }


class _Queued:
    """A marker waiting for its turn in a request to one leader."""

    __slots__ = ("marker", "results", "tps")

    def __init__(self, tps: list, marker: tuple):
        self.tps = tps
        self.marker = marker  # (producer id, producer epoch, commit, coordinator epoch)
        self.results: dict[TopicPartition, ErrorCode] | None = None


def _marker(tps, producer_id: int, epoch: int, commit: bool, coordinator_epoch: int) -> WritableTxnMarker:
    topics: dict[str, list[int]] = {}
    for topic, index in tps:
        topics.setdefault(topic, []).append(index)
    return WritableTxnMarker(
        producer_id=producer_id,
        producer_epoch=epoch,
        transaction_result=commit,
        coordinator_epoch=coordinator_epoch,
        topics=[WritableTxnMarkerTopic(name=t, partition_indexes=ids) for t, ids in topics.items()],
    )
