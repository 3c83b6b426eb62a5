"""Heartbeat v0-4 (api key 12).

v1 throttle time; v3 group.instance.id; v4 flexible. Keeps a member's
session alive; REBALANCE_IN_PROGRESS tells it to rejoin. Rules in
groups/classic.py, and groups/consumer_classic.py for a classic member of
a KIP-848 consumer group. While the group's partition of
__consumer_offsets is loading the answer is NONE, as Kafka's (the member
has nothing to do yet); NOT_COORDINATOR if that partition is not ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.heartbeat_response import HeartbeatResponse
from pybroker.protocol.registry import ApiKey

from ..groups.coordinator import now_ms
from . import handles

if TYPE_CHECKING:
    from ..groups.coordinator import GroupCoordinator


@handles(ApiKey.HEARTBEAT, 0, 4)
def heartbeat(ctx, req, *, groups: GroupCoordinator, authorizer):
    coordinator = groups
    if authorizer is not None and not authorizer.allowed(ctx, Operation.READ, ResourceType.GROUP, req.group_id):
        return HeartbeatResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    if not req.group_id:
        return HeartbeatResponse(error_code=ErrorCode.INVALID_GROUP_ID)
    status = coordinator.status(req.group_id)
    if status != ErrorCode.NONE:
        loading = status == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        return HeartbeatResponse(error_code=ErrorCode.NONE if loading else status)
    group = coordinator.get(req.group_id)
    if group is None:
        return HeartbeatResponse(error_code=ErrorCode.UNKNOWN_MEMBER_ID)
    instance = req.group_instance_id if ctx.api_version >= 3 else None
    error = coordinator.heartbeat(group, now_ms(), req.member_id, instance, req.generation_id)
    return HeartbeatResponse(error_code=error)
