"""InitProducerId v0-4 (api key 22).

Without a transactional id the caller is an idempotent producer: it gets a
producer id never handed out before (ids come from blocks persisted in the
cluster metadata, so a restart cannot repeat one) and epoch 0. v2 is
flexible; v3 lets a producer send its current id and epoch (KIP-360) —
for an idempotent producer a fresh id is the answer, as in Kafka. In
cluster mode a new block of ids is taken from ZooKeeper when one runs out,
and the answer waits for it (a failure is COORDINATOR_NOT_AVAILABLE, as
Kafka answers when its producer-id manager cannot get a block).
A transactional id goes to the transaction coordinator (txn/), which
answers once the id's new epoch is written to __transaction_state; an
empty transactional id is INVALID_REQUEST, as in Kafka. Before v4
PRODUCER_FENCED is answered INVALID_PRODUCER_EPOCH.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.init_producer_id_response import InitProducerIdResponse
from pybroker.protocol.registry import ApiKey

from ..txn.state import for_version
from . import Later, handles

if TYPE_CHECKING:
    from ..producer_ids import ProducerIds
    from ..txn.coordinator import TransactionCoordinator


@handles(ApiKey.INIT_PRODUCER_ID, 0, 4)
def init_producer_id(ctx, req, *, producer_ids: ProducerIds, txns: TransactionCoordinator, authorizer):
    if req.transactional_id is not None:
        if not req.transactional_id:
            return InitProducerIdResponse(error_code=ErrorCode.INVALID_REQUEST, producer_id=-1, producer_epoch=-1)
        if authorizer is not None and not authorizer.allowed(ctx, Operation.WRITE, ResourceType.TRANSACTIONAL_ID, req.transactional_id):
            return InitProducerIdResponse(
                error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, producer_id=-1, producer_epoch=-1
            )
        version = ctx.api_version
        expected = (req.producer_id, req.producer_epoch) if version >= 3 else (-1, -1)

        async def transactional():
            try:
                error, pid, epoch = await txns.init_producer_id(
                    req.transactional_id, req.transaction_timeout_ms, *expected
                )
            except KafkaError as exc:
                error, pid, epoch = ErrorCode(exc.code), -1, -1
            return InitProducerIdResponse(
                error_code=for_version(error, version, 4), producer_id=pid, producer_epoch=epoch
            )

        return Later(transactional)
    # An idempotent producer: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic (KIP-679).
    if authorizer is not None and not (
        authorizer.cluster(ctx, Operation.IDEMPOTENT_WRITE, False)
        or authorizer.any_of_type(ctx, Operation.WRITE, ResourceType.TOPIC)
    ):
        return InitProducerIdResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, producer_id=-1, producer_epoch=-1)
    pid = producer_ids.new_producer_id()
    if pid is not None:
        return InitProducerIdResponse(producer_id=pid, producer_epoch=0)

    async def fetched():
        try:
            return InitProducerIdResponse(producer_id=await producer_ids.next_producer_id(), producer_epoch=0)
        except KafkaError as exc:
            return InitProducerIdResponse(error_code=exc.code, producer_id=-1, producer_epoch=-1)

    return Later(fetched)
