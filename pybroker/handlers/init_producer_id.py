"""InitProducerId v0-4 (api key 22).

Without a transactional id the caller is an idempotent producer: it gets a
producer id never handed out before (ids come from blocks persisted in the
cluster metadata, so a restart cannot repeat one) and epoch 0. v2 is
flexible; v3 lets a producer send its current id and epoch (KIP-360) —
for an idempotent producer a fresh id is the answer, as in Kafka. In
cluster mode a new block of ids is taken from ZooKeeper when one runs out,
and the answer waits for it (a failure is COORDINATOR_NOT_AVAILABLE, as
Kafka answers when its producer-id manager cannot get a block).
Transactional ids need the transaction coordinator, which pybroker does
not have yet: they get COORDINATOR_NOT_AVAILABLE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.init_producer_id_response import InitProducerIdResponse
from pybroker.protocol.registry import ApiKey

from . import Later, handles

if TYPE_CHECKING:
    from ..producer_ids import ProducerIds


@handles(ApiKey.INIT_PRODUCER_ID, 0, 4)
def init_producer_id(ctx, req, *, producer_ids: ProducerIds):
    if req.transactional_id is not None:
        return InitProducerIdResponse(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE, producer_id=-1, producer_epoch=-1)
    pid = producer_ids.new_producer_id()
    if pid is not None:
        return InitProducerIdResponse(producer_id=pid, producer_epoch=0)

    async def fetched():
        try:
            return InitProducerIdResponse(producer_id=await producer_ids.next_producer_id(), producer_epoch=0)
        except KafkaError as exc:
            return InitProducerIdResponse(error_code=exc.code, producer_id=-1, producer_epoch=-1)

    return Later(fetched)
