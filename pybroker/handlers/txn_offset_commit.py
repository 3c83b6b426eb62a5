"""TxnOffsetCommit v0-3 (api key 28).

A transactional producer commits a group's offsets inside its
transaction (after AddOffsetsToTxn): they are written to the group's
partition of __consumer_offsets as a transactional batch of the producer
and count only once the transaction commits (the marker on that
partition); an abort drops them. v2 adds the committed leader epoch, v3
(KIP-447) the consumer's generation, member id and instance id, checked
as OffsetCommit checks them when given (generation -1 and no member id:
not checked) and is flexible. Unknown partitions get
UNKNOWN_TOPIC_OR_PARTITION; COORDINATOR_LOAD_IN_PROGRESS / NOT_COORDINATOR
while the group's partition is loading / not ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.txn_offset_commit_response import (
    TxnOffsetCommitResponse,
    TxnOffsetCommitResponsePartition,
    TxnOffsetCommitResponseTopic,
)
from pybroker.protocol.registry import ApiKey

from ..groups.coordinator import now_ms
from ..groups.offsets import OffsetAndMetadata
from . import Later, handles

if TYPE_CHECKING:
    from ..groups.coordinator import GroupCoordinator


@handles(ApiKey.TXN_OFFSET_COMMIT, 0, 3)
def txn_offset_commit(ctx, req, *, groups: GroupCoordinator, authorizer):
    version = ctx.api_version
    now = now_ms()
    errors: dict[tuple[str, int], ErrorCode] = {}
    entries: dict[tuple[str, int], OffsetAndMetadata] = {}
    denied: set[str] = set()
    if authorizer is not None:
        refused = None
        if authorizer is not None and not authorizer.allowed(ctx, Operation.WRITE, ResourceType.TRANSACTIONAL_ID, req.transactional_id):
            refused = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        elif not authorizer.allowed(ctx, Operation.READ, ResourceType.GROUP, req.group_id):
            refused = ErrorCode.GROUP_AUTHORIZATION_FAILED
        if refused is not None:
            for topic in req.topics:
                errors.update(((topic.name, p.partition_index), refused) for p in topic.partitions)
            return _response(req, errors)
        names = {t.name for t in req.topics}
        denied = names - authorizer.allowed_names(ctx, Operation.READ, ResourceType.TOPIC, names)
    for topic in req.topics:
        for p in topic.partitions:
            tp = (topic.name, p.partition_index)
            if topic.name in denied:
                errors[tp] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                continue
            if not groups.topics.has_partition(*tp):
                errors[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            entries[tp] = OffsetAndMetadata(
                offset=p.committed_offset,
                leader_epoch=p.committed_leader_epoch if version >= 2 else -1,
                metadata=p.committed_metadata or "",
                commit_timestamp=now,
            )
    if not entries:
        return _response(req, errors)
    error = groups.status(req.group_id)
    if error == ErrorCode.NONE and version >= 3 and (req.generation_id >= 0 or req.member_id):
        error = groups.validate_offset_commit(req.group_id, req.generation_id, req.member_id, req.group_instance_id)
    elif error == ErrorCode.NONE and groups.get(req.group_id) is None:
        groups.get_or_create(req.group_id, now)
    if error != ErrorCode.NONE:
        errors.update(dict.fromkeys(entries, error))
        return _response(req, errors)
    written = groups.offsets.txn_commit(req.group_id, req.producer_id, req.producer_epoch, entries, now)

    async def wait():
        errors.update(await written.wait())
        return _response(req, errors)

    return Later(wait)


def _response(req, errors) -> TxnOffsetCommitResponse:
    topics: dict[str, list] = {}
    for topic in req.topics:
        parts = topics.setdefault(topic.name, [])
        for p in topic.partitions:
            parts.append(TxnOffsetCommitResponsePartition(
                partition_index=p.partition_index, error_code=errors[(topic.name, p.partition_index)]
            ))
    return TxnOffsetCommitResponse(
        topics=[TxnOffsetCommitResponseTopic(name=name, partitions=parts) for name, parts in topics.items()]
    )
