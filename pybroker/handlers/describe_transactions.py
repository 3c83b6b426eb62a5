"""DescribeTransactions v0 (api key 65, flexible): the coordinator's state
of each transactional id it coordinates — state name as Kafka spells it,
timeout, start time, producer id and epoch, the partitions of the open
transaction. TRANSACTIONAL_ID_NOT_FOUND for an id it does not know,
COORDINATOR_LOAD_IN_PROGRESS / NOT_COORDINATOR where the id's partition is
loading / not ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.describe_transactions_response import (
    DescribeTransactionsResponse,
    TopicData,
    TransactionState,
)
from pybroker.protocol.registry import ApiKey

from ..txn.state import STATE_NAMES
from . import handles

if TYPE_CHECKING:
    from ..txn.coordinator import TransactionCoordinator


@handles(ApiKey.DESCRIBE_TRANSACTIONS, 0, 0)
def describe_transactions(ctx, req, *, txns: TransactionCoordinator, authorizer):
    if authorizer is None:
        return DescribeTransactionsResponse(transaction_states=[_describe(txns, i) for i in req.transactional_ids])
    states = []
    for txn_id in req.transactional_ids:
        if not authorizer.allowed(ctx, Operation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, txn_id):
            states.append(TransactionState(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                                           transactional_id=txn_id, producer_id=-1, producer_epoch=-1))
            continue
        state = _describe(txns, txn_id)
        # Only the partitions of topics the principal may describe are shown.
        state.topics = [
            t for t in state.topics or []
            if authorizer.allowed(ctx, Operation.DESCRIBE, ResourceType.TOPIC, t.topic, False)
        ]
        states.append(state)
    return DescribeTransactionsResponse(transaction_states=states)


def _describe(txns, txn_id: str) -> TransactionState:
    error = txns.status(txn_id) if txns.metadata.topic("__transaction_state") is not None else ErrorCode.NONE
    txn = txns.describe(txn_id) if not error else None
    if error or txn is None:
        return TransactionState(error_code=error or ErrorCode.TRANSACTIONAL_ID_NOT_FOUND, transactional_id=txn_id,
                                producer_id=-1, producer_epoch=-1)
    topics: dict[str, list[int]] = {}
    for topic, index in sorted(txn.partitions):
        topics.setdefault(topic, []).append(index)
    return TransactionState(
        transactional_id=txn_id,
        transaction_state=STATE_NAMES[txn.state],
        transaction_timeout_ms=txn.timeout_ms,
        transaction_start_time_ms=txn.start_ms,
        producer_id=txn.producer_id,
        producer_epoch=txn.epoch,
        topics=[TopicData(topic=t, partitions=ps) for t, ps in topics.items()],
    )
