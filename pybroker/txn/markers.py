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

    async def append(
        self, partitions: Iterable[TopicPartition], producer_id: int, epoch: int, commit: bool, coordinator_epoch: int
    ) -> dict[TopicPartition, ErrorCode]:
        """Append the marker to each partition this broker leads and wait
        until committed: the error per partition."""
        now = now_ms()
        results: dict[TopicPartition, ErrorCode] = {}
        appended = {}
        for tp in partitions:
            batch = RecordBatch(bytearray(build_control_batch(producer_id, epoch, commit, coordinator_epoch, now)))
            try:
                appended[tp] = self.replicas.append(*tp, batch, now=now, acks=-1, origin=Origin.COORDINATOR)
            except KafkaError as exc:
                results[tp] = ErrorCode(exc.code)
        if appended:
            failed = await self.replicas.until_committed(list(appended.values()), MARKER_TIMEOUT_MS)
            for tp, a in appended.items():
                error = failed.get(a)
                results[tp] = ErrorCode.NONE if error is None else ErrorCode(error.code)
                if error is None and tp[0] == OFFSETS_TOPIC and self.groups is not None:
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
            results.update(await self._send(leader, tps, *marker))

    def _leader(self, tp: TopicPartition) -> int | None:
        """The partition's leader (-1: none now), None when it does not exist."""
        info = self.metadata.topic(tp[0])
        if info is None or tp[1] >= len(info.partitions):
            return None
        return info.partitions[tp[1]].leader

    async def _send(self, leader: int, tps, producer_id: int, epoch: int, commit: bool, coordinator_epoch: int):
        topics: dict[str, list[int]] = {}
        for topic, index in tps:
            topics.setdefault(topic, []).append(index)
        request = WriteTxnMarkersRequest(markers=[WritableTxnMarker(
            producer_id=producer_id, producer_epoch=epoch, transaction_result=commit,
            coordinator_epoch=coordinator_epoch,
            topics=[WritableTxnMarkerTopic(name=t, partition_indexes=ids) for t, ids in topics.items()],
        )])
        try:
            response = await self.links.call(leader, request, 1)
        except (OSError, LinkError, ProtocolError, trio.TooSlowError) as exc:  # retried like a leader change
            log.info("WriteTxnMarkers to broker %d failed: %s", leader, exc)
            return dict.fromkeys(tps, ErrorCode.NOT_LEADER_OR_FOLLOWER)
        results = {}
        for marker in response.markers:
            for topic in marker.topics:
                for p in topic.partitions:
                    results[(topic.name, p.partition_index)] = ErrorCode(p.error_code)
        return {tp: results.get(tp, ErrorCode.UNKNOWN_SERVER_ERROR) for tp in tps}
