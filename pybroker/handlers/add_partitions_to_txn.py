"""AddPartitionsToTxn v0-4 (api key 24).

A transactional producer names the partitions it is about to write
before writing them; the coordinator adds them to the transaction
(written to __transaction_state before the answer). v3 is flexible. v4
batches several transactions per request and may ask only whether the
partitions are already in their transactions (``verify_only``, KIP-890):
partition leaders ask that before appending a transactional batch; v4 is
for brokers only, as Kafka serves it.

Partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION and the rest
of their transaction OPERATION_NOT_ATTEMPTED, nothing added; otherwise
every partition gets the transaction's answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.add_partitions_to_txn_response import (
    AddPartitionsToTxnPartitionResult,
    AddPartitionsToTxnResponse,
    AddPartitionsToTxnResult,
    AddPartitionsToTxnTopicResult,
)
from pybroker.protocol.registry import ApiKey

from ..txn.state import for_version
from . import Later, handles

if TYPE_CHECKING:
    from ..txn.coordinator import TransactionCoordinator


@handles(ApiKey.ADD_PARTITIONS_TO_TXN, 0, 4)
def add_partitions_to_txn(ctx, req, *, txns: TransactionCoordinator, metadata, authorizer):
    if ctx.api_version >= 4:
        # Batched: a broker verifying for its producers (KIP-890).
        if authorizer is not None and not authorizer.cluster(ctx, Operation.CLUSTER_ACTION):
            return AddPartitionsToTxnResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
        return Later(lambda: _batched(req, txns, metadata))
    partitions = [(t.name, i) for t in req.v3_and_below_topics for i in t.partitions]
    if authorizer is not None:
        refused = _refused(ctx, authorizer, req.v3_and_below_transactional_id, partitions)
        if refused is not None:
            return AddPartitionsToTxnResponse(results_by_topic_v3_and_below=_by_topic(refused))

    async def answer():
        results = await _one(txns, metadata, req.v3_and_below_transactional_id, req.v3_and_below_producer_id,
                             req.v3_and_below_producer_epoch, partitions, False)
        results = {tp: for_version(e, ctx.api_version, 2) for tp, e in results.items()}
        return AddPartitionsToTxnResponse(results_by_topic_v3_and_below=_by_topic(results))

    return Later(answer)


def _refused(ctx, authorizer, txn_id: str, partitions: list) -> dict | None:
    """WRITE on the transactional id (else every partition fails), then
    on each topic: the refused ones TOPIC_AUTHORIZATION_FAILED, the others
    OPERATION_NOT_ATTEMPTED."""
    if not authorizer.allowed(ctx, Operation.WRITE, ResourceType.TRANSACTIONAL_ID, txn_id):
        return dict.fromkeys(partitions, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    names = {t for t, _ in partitions}
    denied = names - authorizer.allowed_names(ctx, Operation.WRITE, ResourceType.TOPIC, names)
    if not denied:
        return None
    return {
        tp: ErrorCode.TOPIC_AUTHORIZATION_FAILED if tp[0] in denied else ErrorCode.OPERATION_NOT_ATTEMPTED
        for tp in partitions
    }


async def _batched(req, txns, metadata):
    out = []
    for t in req.transactions:
        partitions = [(topic.name, i) for topic in t.topics for i in topic.partitions]
        results = await _one(txns, metadata, t.transactional_id, t.producer_id, t.producer_epoch, partitions,
                             t.verify_only)
        out.append(AddPartitionsToTxnResult(transactional_id=t.transactional_id, topic_results=_by_topic(results)))
    return AddPartitionsToTxnResponse(results_by_transaction=out)


async def _one(txns, metadata, txn_id, producer_id, epoch, partitions, verify_only) -> dict:
    unknown = [tp for tp in partitions if not _exists(metadata, tp)]
    if unknown:
        results = dict.fromkeys(partitions, ErrorCode.OPERATION_NOT_ATTEMPTED)
        results.update(dict.fromkeys(unknown, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
        return results
    if verify_only:
        return txns.verify_partitions(txn_id, producer_id, epoch, partitions)
    return dict.fromkeys(partitions, await txns.add_partitions(txn_id, producer_id, epoch, partitions))


def _exists(metadata, tp) -> bool:
    info = metadata.topic(tp[0])
    return info is not None and 0 <= tp[1] < len(info.partitions)


def _by_topic(results: dict) -> list:
    topics: dict[str, list] = {}
    for (topic, index), error in results.items():
        topics.setdefault(topic, []).append(
            AddPartitionsToTxnPartitionResult(partition_index=index, partition_error_code=error)
        )
    return [AddPartitionsToTxnTopicResult(name=t, results_by_partition=ps) for t, ps in topics.items()]
