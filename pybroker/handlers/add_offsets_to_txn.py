"""AddOffsetsToTxn v0-3 (api key 25).

Before TxnOffsetCommit, a transactional producer adds the group's
partition of __consumer_offsets to its transaction, so that the
transaction's commit or abort marker also settles the offsets it commits.
v3 is flexible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.add_offsets_to_txn_response import AddOffsetsToTxnResponse
from pybroker.protocol.registry import ApiKey

from ..groups import OFFSETS_TOPIC
from ..txn.state import for_version
from . import Later, handles

if TYPE_CHECKING:
    from ..groups.coordinator import GroupCoordinator
    from ..txn.coordinator import TransactionCoordinator


@handles(ApiKey.ADD_OFFSETS_TO_TXN, 0, 3)
def add_offsets_to_txn(ctx, req, *, txns: TransactionCoordinator, groups: GroupCoordinator, authorizer):
    if authorizer is not None:
        if not authorizer.allowed(ctx, Operation.WRITE, ResourceType.TRANSACTIONAL_ID, req.transactional_id):
            return AddOffsetsToTxnResponse(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        if not authorizer.allowed(ctx, Operation.READ, ResourceType.GROUP, req.group_id):
            return AddOffsetsToTxnResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)

    async def answer():
        groups.ensure_offsets_topic()
        tp = (OFFSETS_TOPIC, groups.partition_index(req.group_id))
        error = await txns.add_partitions(req.transactional_id, req.producer_id, req.producer_epoch, [tp])
        return AddOffsetsToTxnResponse(error_code=for_version(error, ctx.api_version, 2))

    return Later(answer)
