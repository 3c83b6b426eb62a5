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
group's partition of __consumer_offsets and answered as soon as that
append is done, when the offsets also become visible to OffsetFetch: this
is Kafka's acks=-1 append on a single replica. Waiting for an fsync as
well would open a window in which another member already reads an offset
whose committer has not yet been told it is committed (and may never be,
if it dies meanwhile); the page cache keeps the batch across a crash of
the broker process, and the log's flush policy decides the rest. The
empty group id is allowed here, as in Kafka.
"""

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.offset_commit_response import (
    OffsetCommitResponse,
    OffsetCommitResponsePartition,
    OffsetCommitResponseTopic,
)
from pybroker.protocol.registry import ApiKey

from ..groups.coordinator import now_ms
from ..groups.offsets import OffsetAndMetadata
from . import handles


@handles(ApiKey.OFFSET_COMMIT, 0, 9)
def offset_commit(ctx, req):
    version = ctx.api_version
    broker = ctx.broker
    coordinator = broker.groups
    now = now_ms()
    errors: dict[tuple[str, int], ErrorCode] = {}
    entries: dict[tuple[str, int], OffsetAndMetadata] = {}
    expire = now + req.retention_time_ms if 2 <= version <= 4 and req.retention_time_ms != -1 else -1
    for topic in req.topics:
        known = topic.name in broker.metadata.topics
        for p in topic.partitions:
            tp = (topic.name, p.partition_index)
            if not known or broker.partition(*tp) is None:
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
    instance_id = req.group_instance_id if version >= 7 else None
    error = coordinator.validate_offset_commit(
        req.group_id, req.generation_id_or_member_epoch, req.member_id, instance_id, api_version=version
    )
    if error != ErrorCode.NONE:
        errors.update((tp, error) for tp in entries)
        return _response(req, errors)
    errors.update(coordinator.offsets.commit(req.group_id, entries, now))
    return _response(req, errors)


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
