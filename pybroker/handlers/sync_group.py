"""SyncGroup v0-5 (api key 14).

v1 throttle time; v3 group.instance.id; v4 flexible; v5 the protocol type
and name, checked against the group's (INCONSISTENT_GROUP_PROTOCOL; both
are mandatory from v5) and echoed in the response. The leader's request
carries the assignment; every member's SyncGroup, the leader's included,
is answered once the group's metadata with that assignment is committed
to __consumer_offsets (the mapped error if that write failed, and the
group rebalances). Rules in groups/classic.py; a classic member of a
KIP-848 consumer group gets its current assignment at once
(groups/consumer_classic.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.sync_group_response import SyncGroupResponse
from pybroker.protocol.registry import ApiKey

from ..groups.classic import SyncResult
from ..groups.coordinator import Waiter, now_ms
from . import Later, handles

if TYPE_CHECKING:
    from ..groups.coordinator import GroupCoordinator


@handles(ApiKey.SYNC_GROUP, 0, 5)
def sync_group(ctx, req, *, groups: GroupCoordinator, authorizer):
    version = ctx.api_version
    coordinator = groups
    if authorizer is not None and not authorizer.allowed(ctx, Operation.READ, ResourceType.GROUP, req.group_id):
        return _response(version, SyncResult(ErrorCode.GROUP_AUTHORIZATION_FAILED))
    if not req.group_id:
        return _response(version, SyncResult(ErrorCode.INVALID_GROUP_ID))
    status = coordinator.status(req.group_id)
    if status != ErrorCode.NONE:
        return _response(version, SyncResult(status))
    if version >= 5 and (req.protocol_type is None or req.protocol_name is None):
        return _response(version, SyncResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
    group = coordinator.get(req.group_id)
    if group is None:
        return _response(version, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
    waiter = Waiter()
    result = coordinator.sync(
        group,
        now_ms(),
        member_id=req.member_id,
        instance_id=req.group_instance_id if version >= 3 else None,
        generation=req.generation_id,
        protocol_type=req.protocol_type if version >= 5 else None,
        protocol_name=req.protocol_name if version >= 5 else None,
        assignments={a.member_id: a.assignment for a in req.assignments},
        callback=waiter,
    )
    if result is not None:
        return _response(version, result)

    async def wait():
        return _response(version, await waiter.wait())

    return Later(wait)


def _response(version, r: SyncResult) -> SyncGroupResponse:
    return SyncGroupResponse(
        error_code=r.error,
        protocol_type=r.protocol_type,
        protocol_name=r.protocol_name,
        assignment=r.assignment,
    )
