"""JoinGroup v0-9 (api key 11).

v1 adds the rebalance timeout (v0 uses the session timeout for both); v2
throttle time; v4 requires a known member id: a new dynamic member first
gets MEMBER_ID_REQUIRED with its id and joins again (KIP-394); v5 static
membership (group.instance.id, KIP-345); v6 flexible; v7 protocol type in
the response; v8 a reason; v9 skip_assignment for a static leader that
rejoined without a rebalance. The rules per group state are in
groups/classic.py; a KIP-848 consumer group answers its classic members
(groups/consumer_classic.py) once what their join changed is committed. A
join that waits (for the rebalance, or for a write) is answered later, in
order. COORDINATOR_LOAD_IN_PROGRESS / NOT_COORDINATOR while the group's
partition of __consumer_offsets is loading / not ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.join_group_response import JoinGroupResponse, JoinGroupResponseMember
from pybroker.protocol.registry import ApiKey

from ..groups.classic import JoinResult
from ..groups.coordinator import Waiter, now_ms
from . import Later, handles

if TYPE_CHECKING:
    from ..groups.coordinator import GroupCoordinator


@handles(ApiKey.JOIN_GROUP, 0, 9)
def join_group(ctx, req, *, groups: GroupCoordinator, authorizer):
    version = ctx.api_version
    coordinator = groups
    if authorizer is not None and not authorizer.allowed(ctx, Operation.READ, ResourceType.GROUP, req.group_id):
        return _response(version, _error(ErrorCode.GROUP_AUTHORIZATION_FAILED, req.member_id))
    if not req.group_id:
        return _response(version, _error(ErrorCode.INVALID_GROUP_ID, req.member_id))
    status = coordinator.status(req.group_id)
    if status != ErrorCode.NONE:
        return _response(version, _error(status, req.member_id))
    # Checked before the group is looked up, as Kafka does: otherwise the
    # refused join would leave behind an empty group, listed by ListGroups
    # until offset retention removes it. (group.join checks it again.)
    limits = coordinator.config
    if not limits.min_session_timeout_ms <= req.session_timeout_ms <= limits.max_session_timeout_ms:
        return _response(version, _error(ErrorCode.INVALID_SESSION_TIMEOUT, req.member_id))
    if req.member_id and coordinator.get(req.group_id) is None:
        return _response(version, _error(ErrorCode.UNKNOWN_MEMBER_ID, req.member_id))
    group = coordinator.get_or_create(req.group_id)
    waiter = Waiter()
    result = coordinator.join(
        group,
        now_ms(),
        member_id=req.member_id,
        instance_id=req.group_instance_id if version >= 5 else None,
        client_id=ctx.client_id or "",
        client_host="/" + ctx.peer.rsplit(":", 1)[0],
        session_timeout=req.session_timeout_ms,
        rebalance_timeout=req.rebalance_timeout_ms if version >= 1 else req.session_timeout_ms,
        protocol_type=req.protocol_type,
        protocols=[(p.name, p.metadata) for p in req.protocols],
        require_known_member_id=version >= 4 and (version < 5 or req.group_instance_id is None),
        supports_skip_assignment=version >= 9,
        callback=waiter,
    )
    if result is not None:
        return _response(version, result)

    async def wait():
        return _response(version, await waiter.wait())

    return Later(wait)


def _error(code, member_id):
    return JoinResult(code, member_id)


def _response(version, r) -> JoinGroupResponse:
    return JoinGroupResponse(
        error_code=r.error,
        generation_id=r.generation,
        protocol_type=r.protocol_type,
        # Nullable only from v7; older clients read an empty name instead.
        protocol_name=r.protocol_name if r.protocol_name is not None or version >= 7 else "",
        leader=r.leader,
        skip_assignment=r.skip_assignment if version >= 9 else False,
        member_id=r.member_id,
        members=[
            JoinGroupResponseMember(member_id=m, group_instance_id=i if version >= 5 else None, metadata=meta)
            for m, i, meta in r.members
        ],
    )
