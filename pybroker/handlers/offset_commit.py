"""OffsetCommit v0-9 (api key 8).

v0 has neither generation nor member id: it is a standalone commit
(generation -1), which Kafka once kept in ZooKeeper and Kafka 4 no longer
serves; v1 adds them and a per-partition commit timestamp. We keep both
(sarama 1.22, still in Debian, commits with v1).

v2-4 carry a retention time: when it is not -1 the offsets get an explicit
expire timestamp (now + retention) that overrides offsets.retention.minutes;
from v5 the field is gone and the broker's retention alone decides. v3
throttle time; v6 the committed leader epoch; v7 group.instance.id (static
members); v8 flexible; v9 renames the generation "generation or member
epoch" (KIP-848): a classic group reads it as its generation, a consumer
group as the member's epoch (and refuses commits of its members below v9).

Checks, in Kafka's order: partitions of unknown topics, or beyond a topic's
partition count, get UNKNOWN_TOPIC_OR_PARTITION (and nothing else happens
if no partition is left); then the group's rules (groups/classic.py via the
coordinator: a missing group accepts generation -1 and becomes a simple
group, otherwise ILLEGAL_GENERATION; members, generations, fencing,
REBALANCE_IN_PROGRESS; a KIP-848 consumer group checks member epochs, and
from v9 a missing group with a generation is GROUP_ID_NOT_FOUND); then each partition's metadata size
(OFFSET_METADATA_TOO_LARGE). The rest are written as one batch to the
group's partition of __consumer_offsets with acks=-1 (Kafka's
offsets.commit.required.acks) and answered once that batch is committed
(on a single node: fsynced, unless the offsets topic caches writes),
which is also when the offsets become visible to OffsetFetch: no member
reads an offset whose committer has not been told it is committed. A
failed write answers Kafka's mapped error for every partition of the
batch and applies nothing. The empty group id is allowed here, as in
Kafka. COORDINATOR_LOAD_IN_PROGRESS / NOT_COORDINATOR while the group's
partition is loading / not ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.offset_commit_response import (
    OffsetCommitResponse,
    OffsetCommitResponsePartition,
    OffsetCommitResponseTopic,
)
from pybroker.protocol.registry import ApiKey

from ..groups.coordinator import now_ms
from ..groups.offsets import OffsetAndMetadata
from . import Later, handles

if TYPE_CHECKING:
    from ..groups.coordinator import GroupCoordinator


@handles(ApiKey.OFFSET_COMMIT, 0, 9)
def offset_commit(ctx, req, *, groups: GroupCoordinator, authorizer):
    version = ctx.api_version
    coordinator = groups
    topics = coordinator.topics
    now = now_ms()
    errors: dict[tuple[str, int], ErrorCode] = {}
    denied: set[str] = set()
    if authorizer is not None:
        if not authorizer.allowed(ctx, Operation.READ, ResourceType.GROUP, req.group_id):
            for topic in req.topics:
                errors.update(((topic.name, p.partition_index), ErrorCode.GROUP_AUTHORIZATION_FAILED)
                              for p in topic.partitions)
            return _response(req, errors)
        names = {t.name for t in req.topics}
        denied = names - authorizer.allowed_names(ctx, Operation.READ, ResourceType.TOPIC, names)
    entries: dict[tuple[str, int], OffsetAndMetadata] = {}
    expire = now + req.retention_time_ms if 2 <= version <= 4 and req.retention_time_ms != -1 else -1
    for topic in req.topics:
        for p in topic.partitions:
            tp = (topic.name, p.partition_index)
            if topic.name in denied:
                errors[tp] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                continue
            if not topics.has_partition(*tp):
                errors[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            entries[tp] = OffsetAndMetadata(
                offset=p.committed_offset,
                leader_epoch=p.committed_leader_epoch if version >= 6 else -1,
                metadata=p.committed_metadata or "",
                commit_timestamp=p.commit_timestamp if version == 1 and p.commit_timestamp != -1 else now,
                expire_timestamp=expire,
            )
    if not entries:
        return _response(req, errors)
    status = coordinator.status(req.group_id)
    if status != ErrorCode.NONE:
        errors.update((tp, status) for tp in entries)
        return _response(req, errors)
    instance_id = req.group_instance_id if version >= 7 else None
    error = coordinator.validate_offset_commit(
        req.group_id, req.generation_id_or_member_epoch, req.member_id, instance_id, api_version=version
    )
    if error != ErrorCode.NONE:
        errors.update((tp, error) for tp in entries)
        return _response(req, errors)
    committed = coordinator.offsets.commit(req.group_id, entries, now)
    if committed.done:
        errors.update(committed.result)
        return _response(req, errors)

    async def wait():
        errors.update(await committed.wait())
        return _response(req, errors)

    return Later(wait)


def _response(req, errors: dict[tuple[str, int], ErrorCode]) -> OffsetCommitResponse:
    """Topics and partitions in the order asked, each once."""
    topics: dict[str, list] = {}
    seen = set()
    for topic in req.topics:
        parts = topics.setdefault(topic.name, [])
        for p in topic.partitions:
            tp = (topic.name, p.partition_index)
            if tp not in seen:
                seen.add(tp)
                parts.append(OffsetCommitResponsePartition(partition_index=p.partition_index, error_code=errors[tp]))
    return OffsetCommitResponse(
        topics=[OffsetCommitResponseTopic(name=name, partitions=parts) for name, parts in topics.items()]
    )
