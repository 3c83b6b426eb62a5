"""WriteTxnMarkers v0-1 (api key 27): a transaction coordinator on
another broker asks this partition leader to append commit or abort
markers (txn/markers.py). Each partition is answered with its append's
error: NOT_LEADER_OR_FOLLOWER / UNKNOWN_TOPIC_OR_PARTITION where it is not
here, TRANSACTION_COORDINATOR_FENCED for an older coordinator epoch,
INVALID_PRODUCER_EPOCH for an older producer epoch. v1 is flexible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.write_txn_markers_response import (
    WritableTxnMarkerPartitionResult,
    WritableTxnMarkerResult,
    WritableTxnMarkerTopicResult,
    WriteTxnMarkersResponse,
)
from pybroker.protocol.registry import ApiKey

from . import Later, handles

if TYPE_CHECKING:
    from ..txn.coordinator import TransactionCoordinator


@handles(ApiKey.WRITE_TXN_MARKERS, 0, 1)
def write_txn_markers(ctx, req, *, txns: TransactionCoordinator, authorizer):
    if authorizer is not None and not authorizer.cluster(ctx, Operation.CLUSTER_ACTION):
        return WriteTxnMarkersResponse(markers=[
            WritableTxnMarkerResult(producer_id=m.producer_id, topics=[
                WritableTxnMarkerTopicResult(name=t.name, partitions=[
                    WritableTxnMarkerPartitionResult(partition_index=i, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
                    for i in t.partition_indexes
                ])
                for t in m.topics
            ])
            for m in req.markers
        ])

    async def answer():
        # Every marker appended before any is waited for: the request's
        # transactions share one replication round, as Kafka appends them.
        markers = [
            ([(t.name, i) for t in m.topics for i in t.partition_indexes],
             m.producer_id, m.producer_epoch, m.transaction_result, m.coordinator_epoch)
            for m in req.markers
        ]
        out = []
        for m, results in zip(req.markers, await txns.markers.append_all(markers)):
            topics: dict[str, list] = {}
            for (topic, index), error in results.items():
                topics.setdefault(topic, []).append(
                    WritableTxnMarkerPartitionResult(partition_index=index, error_code=error)
                )
            out.append(WritableTxnMarkerResult(producer_id=m.producer_id, topics=[
                WritableTxnMarkerTopicResult(name=t, partitions=ps) for t, ps in topics.items()
            ]))
        return WriteTxnMarkersResponse(markers=out)

    return Later(answer)
