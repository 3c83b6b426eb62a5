"""DeleteGroups v0-2 (api key 42).

Each named group (duplicates answered once): missing or Dead ->
GROUP_ID_NOT_FOUND; with members (any state but Empty, classic or KIP-848
consumer group) -> NON_EMPTY_GROUP; Empty -> the group dies and a
batch of tombstones goes to its partition of __consumer_offsets: one per
committed offset, then one for the group's metadata if it is a classic
group that ever had a generation. As in Kafka the group is gone even if that write fails;
the response is sent once the tombstones are committed (or have failed).
COORDINATOR_LOAD_IN_PROGRESS / NOT_COORDINATOR for a group whose partition
is loading / not ours. v1 throttle time; v2 flexible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.delete_groups_response import DeletableGroupResult, DeleteGroupsResponse
from pybroker.protocol.registry import ApiKey

from ..groups.classic import EMPTY
from ..groups.offsets import has_metadata
from . import Later, handles

if TYPE_CHECKING:
    from ..groups.coordinator import GroupCoordinator


@handles(ApiKey.DELETE_GROUPS, 0, 2)
def delete_groups(ctx, req, *, groups: GroupCoordinator, authorizer):
    coordinator = groups
    results = []
    writes = []
    for group_id in dict.fromkeys(req.groups_names):
        group = coordinator.get(group_id)
        status = coordinator.status(group_id)
        if authorizer is not None and not authorizer.allowed(ctx, Operation.DELETE, ResourceType.GROUP, group_id):
            code = ErrorCode.GROUP_AUTHORIZATION_FAILED
        elif status != ErrorCode.NONE:
            code = status
        elif group is None:
            code = ErrorCode.GROUP_ID_NOT_FOUND
        elif group.state != EMPTY:
            code = ErrorCode.NON_EMPTY_GROUP
        else:
            forgotten = coordinator.remove(group_id)  # a consumer group's own records
            if forgotten is not None:
                writes.append(forgotten)
            writes.append(coordinator.offsets.delete_group(group_id, group.generation if has_metadata(group) else 0))
            code = ErrorCode.NONE
        results.append(DeletableGroupResult(group_id=group_id, error_code=code))
    response = DeleteGroupsResponse(results=results)
    pending = [w for w in writes if not w.done]
    if not pending:
        return response

    async def wait():
        for w in pending:
            await w.wait()
        return response

    return Later(wait)
