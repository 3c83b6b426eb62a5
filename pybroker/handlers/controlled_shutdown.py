"""ControlledShutdown v0-3 (api key 7).

A broker about to stop asks the controller to move its leaderships away
first (Kafka's ZooKeeper-mode KafkaApis.handleControlledShutdownRequest).
v0 has no client id in its request header; v2 adds the broker epoch, a
request from an older incarnation being STALE_BROKER_EPOCH; v3 is
flexible. The ``controller`` service decides: NOT_CONTROLLER on a broker
that is not the controller, BROKER_NOT_AVAILABLE for a broker that is
not registered, else NONE with the partitions the broker still leads (it
is their last in-sync replica, so they could not move).
"""

from __future__ import annotations

from pybroker.acl import Operation
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.controlled_shutdown_response import ControlledShutdownResponse, RemainingPartition
from pybroker.protocol.registry import ApiKey

from . import Later, handles


@handles(ApiKey.CONTROLLED_SHUTDOWN, 0, 3)
def controlled_shutdown(ctx, req, *, controller, authorizer):
    if authorizer is not None and not authorizer.cluster(ctx, Operation.CLUSTER_ACTION):
        return ControlledShutdownResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, remaining_partitions=[])

    async def move_away():
        try:
            remaining = await controller.controlled_shutdown(req.broker_id, req.broker_epoch)
        except KafkaError as exc:
            return ControlledShutdownResponse(error_code=exc.code, remaining_partitions=[])
        return ControlledShutdownResponse(
            error_code=ErrorCode.NONE,
            remaining_partitions=[RemainingPartition(topic_name=t, partition_index=p) for t, p in remaining],
        )

    return Later(move_away)
