"""EndTxn v0-3 (api key 26).

Commits or aborts the producer's transaction: answered once the coordinator
has written PrepareCommit / PrepareAbort; the markers follow (see
txn/coordinator.py). A retry of an EndTxn already done succeeds. v3 is
flexible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.end_txn_response import EndTxnResponse
from pybroker.protocol.registry import ApiKey

from ..txn.state import for_version
from . import Later, handles

if TYPE_CHECKING:
    from ..txn.coordinator import TransactionCoordinator


@handles(ApiKey.END_TXN, 0, 3)
def end_txn(ctx, req, *, txns: TransactionCoordinator, authorizer):
    if authorizer is not None and not authorizer.allowed(ctx, Operation.WRITE, ResourceType.TRANSACTIONAL_ID, req.transactional_id):
        return EndTxnResponse(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)

    async def answer():
        error = await txns.end_txn(req.transactional_id, req.producer_id, req.producer_epoch, req.committed)
        return EndTxnResponse(error_code=for_version(error, ctx.api_version, 2))

    return Later(answer)
