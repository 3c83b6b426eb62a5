"""OffsetFetch v1-9 (api key 9).

v1 names its partitions (errors per partition only); v2 adds a top-level
error code and null topics meaning "every committed offset of the group";
v3 throttle time; v5 committed leader epochs; v6 flexible; v7
require_stable (UNSTABLE_OFFSET_COMMIT, offset -1, for a partition with a
commit still pending: in an open transaction, or still being written);
v8 asks for several groups at once (``groups``, each answered with its own
error code); v9 adds a member id and epoch, which only KIP-848 consumer
groups check (UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH; an anonymous fetch,
null member and negative epoch, is fine): classic groups ignore them.

A partition without a committed offset, or any partition of a group that
does not exist, reads as offset -1, metadata "", no error; "all topics" of
a missing group is nothing. A group-level error (the group's partition of
__consumer_offsets is not here) goes where the version puts it: into every
partition (v1), the top-level error code (v2-7), the group's error code
(v8+); so does COORDINATOR_LOAD_IN_PROGRESS / NOT_COORDINATOR while the
group's partition of __consumer_offsets is loading / not ours. Offsets
whose commit is still being written are not shown yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.offset_fetch_response import (
    OffsetFetchResponse,
    OffsetFetchResponseGroup,
    OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
)
from pybroker.protocol.registry import ApiKey

from . import handles

if TYPE_CHECKING:
    from ..groups.coordinator import GroupCoordinator


@handles(ApiKey.OFFSET_FETCH, 1, 9)
def offset_fetch(ctx, req, *, groups: GroupCoordinator, authorizer):
    version = ctx.api_version
    coordinator = groups
    if version >= 8:
        answered = []
        for g in req.groups:
            error, found = _fetch(coordinator, g.group_id, g.topics, req.require_stable, ctx, authorizer)
            if error == ErrorCode.NONE and version >= 9:
                error = coordinator.validate_offset_fetch(g.group_id, g.member_id, g.member_epoch)
            if error != ErrorCode.NONE:
                found = []
            answered.append(
                OffsetFetchResponseGroup(
                    group_id=g.group_id,
                    error_code=error,
                    topics=[
                        OffsetFetchResponseTopics(
                            name=name,
                            partitions=[
                                OffsetFetchResponsePartitions(
                                    partition_index=p, committed_offset=o, committed_leader_epoch=e, metadata=m, error_code=c
                                )
                                for p, o, e, m, c in parts
                            ],
                        )
                        for name, parts in found
                    ],
                )
            )
        return OffsetFetchResponse(groups=answered)
    error, found = _fetch(coordinator, req.group_id, req.topics, version >= 7 and req.require_stable, ctx, authorizer)
    if version >= 2 and error != ErrorCode.NONE:
        found = []
    return OffsetFetchResponse(
        error_code=error if version >= 2 else ErrorCode.NONE,
        topics=[
            OffsetFetchResponseTopic(
                name=name,
                partitions=[
                    OffsetFetchResponsePartition(
                        partition_index=p,
                        committed_offset=o,
                        committed_leader_epoch=e if version >= 5 else -1,
                        metadata=m,
                        error_code=c,
                    )
                    for p, o, e, m, c in parts
                ],
            )
            for name, parts in found
        ],
    )


def _fetch(coordinator, group_id: str, topics, require_stable: bool = False, ctx=None, authorizer=None):
    """(group error, [(topic, [(partition, offset, epoch, metadata, error)])]);
    on a group error every asked partition carries it (what v1 answers).
    With an authorizer: DESCRIBE on the group, else GROUP_AUTHORIZATION_FAILED;
    and on each topic: asked for, TOPIC_AUTHORIZATION_FAILED; all topics
    asked for, the others left out."""
    if authorizer is None:
        return _fetch_group(coordinator, group_id, topics, require_stable)
    if not authorizer.allowed(ctx, Operation.DESCRIBE, ResourceType.GROUP, group_id):
        code = ErrorCode.GROUP_AUTHORIZATION_FAILED
        return code, [(t.name, [(p, -1, -1, "", code) for p in t.partition_indexes]) for t in topics or []]
    error, found = _fetch_group(coordinator, group_id, topics, require_stable)
    names = {name for name, _ in found}
    readable = authorizer.allowed_names(ctx, Operation.DESCRIBE, ResourceType.TOPIC, names, topics is not None)
    if topics is None:
        return error, [(name, parts) for name, parts in found if name in readable]
    denied = ErrorCode.TOPIC_AUTHORIZATION_FAILED
    return error, [
        (name, parts if name in readable else [(row[0], -1, -1, "", denied) for row in parts]) for name, parts in found
    ]


def _fetch_group(coordinator, group_id: str, topics, require_stable: bool):
    asked = None if topics is None else [(t.name, p) for t in topics for p in t.partition_indexes]
    error = coordinator.status(group_id)
    if error != ErrorCode.NONE:
        rows = [(t, p, None) for t, p in asked or []]
    elif coordinator.partition_of(group_id) is None:
        error = ErrorCode.COORDINATOR_NOT_AVAILABLE
        rows = [(t, p, None) for t, p in asked or []]
    elif coordinator.get(group_id) is None:
        rows = [(t, p, None) for t, p in asked or []]
    else:
        rows = coordinator.offsets.fetch(group_id, asked)
    found: dict[str, list] = {}
    for topic, partition, om in rows:
        if require_stable and not error and coordinator.offsets.unstable(group_id, [(topic, partition)]):
            row = (partition, -1, -1, "", ErrorCode.UNSTABLE_OFFSET_COMMIT)
        elif om is None:
            row = (partition, -1, -1, "", error)
        else:
            row = (partition, om.offset, om.leader_epoch, om.metadata, ErrorCode.NONE)
        found.setdefault(topic, []).append(row)
    return error, list(found.items())
