"""OffsetDelete v0 (api key 47, KIP-496).

Deletes a group's committed offsets for some partitions. The group id must
not be empty (INVALID_GROUP_ID); partitions of unknown topics get
UNKNOWN_TOPIC_OR_PARTITION. Then, by the group's state: missing or Dead ->
GROUP_ID_NOT_FOUND; Empty -> every partition is deleted; a "consumer" group
with members -> GROUP_SUBSCRIBED_TO_TOPIC for the topics its members
subscribe to (all of them when a subscription cannot be read), the others
deleted; any other classic group with members -> NON_EMPTY_GROUP. A KIP-848
consumer group is treated like a "consumer" group in any state. Group errors are
answered alone, without topics, as Kafka does. Tombstones are written only
for offsets that exist (or whose commit is still being written, which
is then not applied); an Empty group left without offsets dies. The
response waits until the tombstones are committed.
COORDINATOR_LOAD_IN_PROGRESS / NOT_COORDINATOR while the group's partition
of __consumer_offsets is loading / not ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.offset_delete_response import (
    OffsetDeleteResponse,
    OffsetDeleteResponsePartition,
    OffsetDeleteResponseTopic,
)
from pybroker.protocol.registry import ApiKey

from ..groups.classic import EMPTY, ClassicGroup
from ..groups.offsets import CONSUMER, group_subscriptions
from . import Later, handles

if TYPE_CHECKING:
    from ..groups.coordinator import GroupCoordinator


@handles(ApiKey.OFFSET_DELETE, 0, 0)
def offset_delete(ctx, req, *, groups: GroupCoordinator, authorizer):
    coordinator = groups
    denied: set[str] = set()
    if authorizer is not None:
        if not authorizer.allowed(ctx, Operation.DELETE, ResourceType.GROUP, req.group_id):
            return OffsetDeleteResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
        names = {t.name for t in req.topics}
        denied = names - authorizer.allowed_names(ctx, Operation.READ, ResourceType.TOPIC, names)
    if not req.group_id:
        return OffsetDeleteResponse(error_code=ErrorCode.INVALID_GROUP_ID)
    status = coordinator.status(req.group_id)
    if status != ErrorCode.NONE:
        return OffsetDeleteResponse(error_code=status)
    errors: dict[tuple[str, int], ErrorCode] = {}
    wanted: list[tuple[str, int]] = []
    for topic in req.topics:
        for p in topic.partitions:
            tp = (topic.name, p.partition_index)
            if topic.name in denied:
                errors[tp] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            elif not coordinator.topics.has_partition(*tp):
                errors[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                wanted.append(tp)
    group = coordinator.get(req.group_id)
    if group is None:
        return OffsetDeleteResponse(error_code=ErrorCode.GROUP_ID_NOT_FOUND)
    if group.state != EMPTY:
        if isinstance(group, ClassicGroup) and group.protocol_type != CONSUMER:
            return OffsetDeleteResponse(error_code=ErrorCode.NON_EMPTY_GROUP)
        subscribed = group_subscriptions(group)
        kept = [tp for tp in wanted if subscribed is None or tp[0] in subscribed]
        errors.update((tp, ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC) for tp in kept)
        wanted = [tp for tp in wanted if tp not in errors]
    written = None
    if wanted:
        _, written = coordinator.offsets.delete_offsets(req.group_id, wanted)
        errors.update((tp, ErrorCode.NONE) for tp in wanted)
    topics: dict[str, list] = {}
    seen = set()
    for topic in req.topics:
        parts = topics.setdefault(topic.name, [])
        for p in topic.partitions:
            tp = (topic.name, p.partition_index)
            if tp not in seen:
                seen.add(tp)
                parts.append(OffsetDeleteResponsePartition(partition_index=p.partition_index, error_code=errors[tp]))
    response = OffsetDeleteResponse(
        error_code=ErrorCode.NONE,
        topics=[OffsetDeleteResponseTopic(name=name, partitions=parts) for name, parts in topics.items()],
    )
    if written is None or written.done:
        return response

    async def wait():
        await written.wait()  # like Kafka's, a deletion stands whatever happens to its write
        return response

    return Later(wait)
