"""LeaveGroup v0-5 (api key 13).

v0-2 name one member; v3 a batch of members with instance ids (KIP-345,
also how an admin removes static members: empty member id, known instance
id) and a per-member error; v4 flexible; v5 a reason per member. For v0-2
the single member's error is the top-level error. A KIP-848 consumer group
removes the classic members named (a static member named by instance id
alone is answered with its member id) and bumps its epoch once; the
response waits until that is committed (the mapped error, as the
top-level error, if it failed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.leave_group_response import LeaveGroupResponse, MemberResponse
from pybroker.protocol.registry import ApiKey

from ..groups.coordinator import now_ms
from . import Later, handles

if TYPE_CHECKING:
    from ..groups.coordinator import GroupCoordinator


@handles(ApiKey.LEAVE_GROUP, 0, 5)
def leave_group(ctx, req, *, groups: GroupCoordinator, authorizer):
    version = ctx.api_version
    coordinator = groups
    if authorizer is not None and not authorizer.allowed(ctx, Operation.READ, ResourceType.GROUP, req.group_id):
        return LeaveGroupResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    leaving = [(m.member_id, m.group_instance_id) for m in req.members] if version >= 3 else [(req.member_id, None)]
    if not req.group_id:
        return LeaveGroupResponse(error_code=ErrorCode.INVALID_GROUP_ID)
    status = coordinator.status(req.group_id)
    if status != ErrorCode.NONE:
        return LeaveGroupResponse(error_code=status)
    group = coordinator.get(req.group_id)
    written = None
    if group is None:
        results = [(m, i, ErrorCode.UNKNOWN_MEMBER_ID) for m, i in leaving]
    else:
        results, written = coordinator.leave(group, now_ms(), leaving)
    if written is not None and written.done and written.result != ErrorCode.NONE:
        return LeaveGroupResponse(error_code=written.result)
    if written is not None and not written.done:

        async def wait():
            error = await written.wait()
            return LeaveGroupResponse(error_code=error) if error else _response(version, results)

        return Later(wait)
    return _response(version, results)


def _response(version, results) -> LeaveGroupResponse:
    if version >= 3:
        return LeaveGroupResponse(
            members=[MemberResponse(member_id=m, group_instance_id=i, error_code=e) for m, i, e in results]
        )
    return LeaveGroupResponse(error_code=results[0][2])
