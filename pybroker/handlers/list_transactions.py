"""ListTransactions v0-1 (api key 66, flexible): the transactional ids this
coordinator holds, filtered by state names (names Kafka does not know
come back in ``unknown_state_filters``), producer ids, and from v1 by
how long the transaction has been running (``duration_filter`` ms; -1:
any). COORDINATOR_LOAD_IN_PROGRESS while a partition is loading.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.list_transactions_response import ListTransactionsResponse, TransactionState
from pybroker.protocol.registry import ApiKey

from ..groups import now_ms
from ..txn.coordinator import LOADING
from ..txn.state import STATE_NAMES, TxnState
from . import handles

if TYPE_CHECKING:
    from ..txn.coordinator import TransactionCoordinator

_BY_NAME = {name: state for state, name in STATE_NAMES.items()}


@handles(ApiKey.LIST_TRANSACTIONS, 0, 1)
def list_transactions(ctx, req, *, txns: TransactionCoordinator, authorizer):
    unknown = [name for name in req.state_filters if name not in _BY_NAME]
    if LOADING in txns.partitions.values():
        return ListTransactionsResponse(error_code=ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, unknown_state_filters=unknown)
    states = {_BY_NAME[n] for n in req.state_filters if n in _BY_NAME}
    pids = set(req.producer_id_filters)
    duration = req.duration_filter if ctx.api_version >= 1 else -1
    now = now_ms()
    listed = []
    for txn in list(txns.txns.values()):
        if txn.state == TxnState.DEAD or (states and txn.state not in states) or (pids and txn.producer_id not in pids):
            continue
        if duration >= 0 and (txn.start_ms < 0 or now - txn.start_ms <= duration):
            continue
        if authorizer is not None and not authorizer.allowed(
            ctx, Operation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, txn.txn_id, False
        ):
            continue
        listed.append(TransactionState(transactional_id=txn.txn_id, producer_id=txn.producer_id,
                                       transaction_state=STATE_NAMES[txn.state]))
    return ListTransactionsResponse(unknown_state_filters=unknown, transaction_states=listed)
