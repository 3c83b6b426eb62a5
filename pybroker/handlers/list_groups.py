"""ListGroups v0-5 (api key 16).

Every group this broker coordinates, with its protocol type ("" for a
simple group that only commits offsets). v1 throttle time; v3 flexible; v4
a states filter (KIP-518) and each group's state in the answer; v5 a types
filter (KIP-848) and each group's type: "classic", or "consumer" for a
KIP-848 group (whose protocol type is "consumer" and whose states are
Empty, Assigning, Reconciling, Stable). Both filters compare without case
and an empty filter lets everything through. While a partition of
__consumer_offsets is loading the groups known so far are listed with
COORDINATOR_LOAD_IN_PROGRESS, as Kafka does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.list_groups_response import ListedGroup, ListGroupsResponse
from pybroker.protocol.registry import ApiKey

from ..groups.classic import DEAD, ClassicGroup
from . import handles

if TYPE_CHECKING:
    from ..groups.coordinator import GroupCoordinator

CLASSIC = "classic"


@handles(ApiKey.LIST_GROUPS, 0, 5)
def list_groups(ctx, req, *, groups: GroupCoordinator, authorizer):
    version = ctx.api_version
    # DESCRIBE on the cluster lists every group; else the describable ones.
    each = authorizer is not None and not authorizer.cluster(ctx, Operation.DESCRIBE, False)
    states = {s.lower() for s in req.states_filter} if version >= 4 else set()
    types = {t.lower() for t in req.types_filter} if version >= 5 else set()
    listed = []
    for group in groups.groups.values():
        kind = CLASSIC if isinstance(group, ClassicGroup) else group.group_type
        if group.state == DEAD or (states and group.state.lower() not in states) or (types and kind not in types):
            continue
        if each and not authorizer.allowed(ctx, Operation.DESCRIBE, ResourceType.GROUP, group.group_id, False):
            continue
        listed.append(
            ListedGroup(
                group_id=group.group_id,
                protocol_type=group.protocol_type or "",
                group_state=group.state if version >= 4 else "",
                group_type=kind if version >= 5 else "",
            )
        )
    error = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS if groups.loading else ErrorCode.NONE
    return ListGroupsResponse(error_code=error, groups=listed)
