"""ConsumerGroupHeartbeat v0-1 (api key 68, KIP-848).

The next-generation consumer group protocol: members send their
subscription and owned partitions, the coordinator assigns partitions and
answers with the member's epoch, the heartbeat interval and, when it
changed (or the request was a full one), the member's assignment by topic
id. Epoch 0 joins, -1 leaves, -2 is a static member leaving for a while.
v0 lets the coordinator choose a member id when the join carries none; v1
requires the client to choose it (KIP-1082) and adds a subscription by
regular expression (KIP-848; INVALID_REGULAR_EXPRESSION when it does not
compile). Requests are checked as Kafka does first (INVALID_REQUEST with
a message, UNSUPPORTED_ASSIGNOR), then the group's rules apply
(groups/consumer.py; which group, in groups/coordinator.py). Errors carry
only the error code and message. The response is sent once the records of
what the heartbeat changed are committed to __consumer_offsets (Kafka's
mapped error if that failed); COORDINATOR_LOAD_IN_PROGRESS /
NOT_COORDINATOR while the group's partition is loading / not ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.consumer_group_heartbeat_response import (
    Assignment,
    ConsumerGroupHeartbeatResponse,
    TopicPartitions,
)
from pybroker.protocol.registry import ApiKey

from ..groups.consumer import validate_heartbeat
from ..groups.coordinator import now_ms
from . import Later, handles

if TYPE_CHECKING:
    from ..groups.coordinator import GroupCoordinator


@handles(ApiKey.CONSUMER_GROUP_HEARTBEAT, 0, 1)
def consumer_group_heartbeat(ctx, req, *, groups: GroupCoordinator, authorizer):
    version = ctx.api_version
    coordinator = groups
    if authorizer is not None:
        if not authorizer.allowed(ctx, Operation.READ, ResourceType.GROUP, req.group_id):
            return ConsumerGroupHeartbeatResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
        # Subscribed topic names the member may not describe: Kafka refuses the heartbeat.
        names = set(req.subscribed_topic_names or ())
        if names and authorizer.allowed_names(ctx, Operation.DESCRIBE, ResourceType.TOPIC, names) != names:
            return ConsumerGroupHeartbeatResponse(error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED)
    regex = req.subscribed_topic_regex if version >= 1 else None
    owned = None
    if req.topic_partitions is not None:
        owned = {}
        for tp in req.topic_partitions:
            owned.setdefault(tp.topic_id, set()).update(tp.partitions)
    problem = validate_heartbeat(
        version,
        group_id=req.group_id,
        member_id=req.member_id,
        member_epoch=req.member_epoch,
        instance_id=req.instance_id,
        rack_id=req.rack_id,
        rebalance_timeout_ms=req.rebalance_timeout_ms,
        subscribed_topic_names=req.subscribed_topic_names,
        subscribed_topic_regex=regex,
        server_assignor=req.server_assignor,
        owned_partitions=req.topic_partitions,
        assignors=coordinator.consumer_config.assignors,
    )
    if problem is not None:
        code, message = problem
        return ConsumerGroupHeartbeatResponse(error_code=code, error_message=message)
    status = coordinator.status(req.group_id)
    if status != ErrorCode.NONE:
        return ConsumerGroupHeartbeatResponse(error_code=status)
    r = coordinator.consumer_group_heartbeat(
        now_ms(),
        req.group_id,
        member_id=req.member_id,
        member_epoch=req.member_epoch,
        instance_id=req.instance_id,
        rack_id=req.rack_id,
        rebalance_timeout_ms=req.rebalance_timeout_ms,
        subscribed_topic_names=req.subscribed_topic_names,
        subscribed_topic_regex=regex,
        server_assignor=req.server_assignor,
        owned_partitions=owned,
        client_id=ctx.client_id or "",
        client_host="/" + ctx.peer.rsplit(":", 1)[0],
    )
    if r.written is not None:
        written = r.written

        async def wait():
            error = await written.wait()
            return ConsumerGroupHeartbeatResponse(error_code=error) if error else _response(r)

        return Later(wait)
    return _response(r)


def _response(r) -> ConsumerGroupHeartbeatResponse:
    if r.error:
        return ConsumerGroupHeartbeatResponse(error_code=r.error, error_message=r.message)
    return ConsumerGroupHeartbeatResponse(
        member_id=r.member_id,
        member_epoch=r.member_epoch,
        heartbeat_interval_ms=r.heartbeat_interval_ms,
        assignment=None
        if r.assignment is None
        else Assignment(
            topic_partitions=[
                TopicPartitions(topic_id=tid, partitions=parts) for tid, parts in sorted(r.assignment.items())
            ]
        ),
    )
