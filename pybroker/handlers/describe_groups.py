"""DescribeGroups v0-5 (api key 15).

Each named group: its state, protocol type ("" for a simple group; kept
after the group empties), and members with client id and host. Only a
Stable group shows its chosen protocol and each member's metadata for it
and assignment; in other states those are empty. A group that does not
exist is described as Dead with no members and no error, as Kafka does;
so is a KIP-848 consumer group, which ConsumerGroupDescribe describes.
v1 throttle time; v3 authorized operations when asked (no authorizer: all
a group supports, READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS;
INT32_MIN when not asked); v4 group.instance.id of static members; v5
flexible. A group whose partition of __consumer_offsets is loading / not
ours gets COORDINATOR_LOAD_IN_PROGRESS / NOT_COORDINATOR.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.describe_groups_response import (
    DescribedGroup,
    DescribedGroupMember,
    DescribeGroupsResponse,
)
from pybroker.protocol.registry import ApiKey

from ..groups.classic import DEAD, STABLE, ClassicGroup
from . import handles
from .metadata import ALTER_CONFIGS, DELETE, DESCRIBE, DESCRIBE_CONFIGS, NOT_REQUESTED, READ

if TYPE_CHECKING:
    from ..groups.coordinator import GroupCoordinator

GROUP_OPERATIONS = sum(1 << op for op in (READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS))


@handles(ApiKey.DESCRIBE_GROUPS, 0, 5)
def describe_groups(ctx, req, *, groups: GroupCoordinator, authorizer):
    version = ctx.api_version
    want_ops = version >= 3 and req.include_authorized_operations
    ops = GROUP_OPERATIONS if want_ops else NOT_REQUESTED
    if authorizer is None:
        return DescribeGroupsResponse(groups=[_answer(groups, gid, version, ops) for gid in req.groups])
    described = []
    for gid in req.groups:
        if not authorizer.allowed(ctx, Operation.DESCRIBE, ResourceType.GROUP, gid):
            described.append(DescribedGroup(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, group_id=gid,
                                            authorized_operations=NOT_REQUESTED))
            continue
        ops = authorizer.operations(ctx, ResourceType.GROUP, gid) if want_ops else NOT_REQUESTED
        described.append(_answer(groups, gid, version, ops))
    return DescribeGroupsResponse(groups=described)


def _answer(groups: GroupCoordinator, group_id: str, version: int, ops: int) -> DescribedGroup:
    status = groups.status(group_id)
    if status != ErrorCode.NONE:
        return DescribedGroup(error_code=status, group_id=group_id, authorized_operations=ops)
    return _describe(groups.get(group_id), group_id, version, ops)


def _describe(group, group_id: str, version: int, ops: int) -> DescribedGroup:
    if not isinstance(group, ClassicGroup):
        # Missing, or a KIP-848 consumer group (ConsumerGroupDescribe's):
        # below v6 Kafka answers both as a Dead group without an error.
        return DescribedGroup(
            error_code=ErrorCode.NONE, group_id=group_id, group_state=DEAD, authorized_operations=ops
        )
    stable = group.state == STABLE
    return DescribedGroup(
        error_code=ErrorCode.NONE,
        group_id=group_id,
        group_state=group.state,
        protocol_type=group.protocol_type or "",
        protocol_data=(group.protocol_name or "") if stable else "",
        members=[
            DescribedGroupMember(
                member_id=m.member_id,
                group_instance_id=m.instance_id if version >= 4 else None,
                client_id=m.client_id,
                client_host=m.client_host,
                member_metadata=m.metadata(group.protocol_name) if stable else b"",
                member_assignment=m.assignment if stable else b"",
            )
            for m in group.members.values()
        ],
        authorized_operations=ops,
    )
