"""ListGroups v0-5 (api key 16).

Every group this broker coordinates, with its protocol type ("" for a
simple group that only commits offsets). v1 throttle time; v3 flexible; v4
a states filter (KIP-518) and each group's state in the answer; v5 a types
filter (KIP-848) and each group's type. Both filters compare without case
and an empty filter lets everything through. All groups here are "classic".
"""

from protocol.error_codes import ErrorCode
from protocol.messages.list_groups_response import ListedGroup, ListGroupsResponse
from protocol.registry import ApiKey

from ..groups.classic import DEAD
from . import handles

CLASSIC = "classic"


@handles(ApiKey.LIST_GROUPS, 0, 5)
def list_groups(ctx, req):
    version = ctx.api_version
    states = {s.lower() for s in req.states_filter} if version >= 4 else set()
    types = {t.lower() for t in req.types_filter} if version >= 5 else set()
    listed = []
    if not types or CLASSIC in types:
        for group in ctx.broker.groups.groups.values():
            if group.state == DEAD or (states and group.state.lower() not in states):
                continue
            listed.append(
                ListedGroup(
                    group_id=group.group_id,
                    protocol_type=group.protocol_type or "",
                    group_state=group.state if version >= 4 else "",
                    group_type=CLASSIC if version >= 5 else "",
                )
            )
    return ListGroupsResponse(error_code=ErrorCode.NONE, groups=listed)
