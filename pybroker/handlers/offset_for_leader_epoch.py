"""OffsetForLeaderEpoch v2-4 (api key 23).

For each partition and leader epoch: the largest epoch at or below it
that the log knows and the offset where that epoch ended (the start of the
next epoch, or the log end offset for the leader's current epoch), which a
consumer uses to detect truncation after a leader change (KIP-320) and a
follower to truncate (KIP-101). v2 adds current_leader_epoch fencing
(FENCED_LEADER_EPOCH when older than ours, UNKNOWN_LEADER_EPOCH when
newer; -1 skips the check) and throttle time; v3 adds the replica id
(-1 for consumers; the leader answers either way, as Kafka does now);
v4 is flexible. Only the leader answers: elsewhere (cluster mode) the
partition gets NOT_LEADER_OR_FOLLOWER, after the epoch check. An unknown partition gets UNKNOWN_TOPIC_OR_PARTITION, an
epoch the log cannot place epoch -1 and offset -1 without error (apache/kafka
ReplicaManager ``lastOffsetForLeaderEpoch``, Partition
``lastOffsetForLeaderEpoch``, UnifiedLog ``endOffsetForEpoch``), a
partition in an offline log directory KAFKA_STORAGE_ERROR.
The answer itself is the replica's (replica.partition ``end_offset_for``);
a leader records its epoch and start offset in the leader-epoch cache
when it is elected, before it serves, so the answer is exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.offset_for_leader_epoch_response import (
    EpochEndOffset,
    OffsetForLeaderEpochResponse,
    OffsetForLeaderTopicResult,
)
from pybroker.protocol.registry import ApiKey

from . import handles

if TYPE_CHECKING:
    from ..replica import ReplicaManager


@handles(ApiKey.OFFSET_FOR_LEADER_EPOCH, 2, 4)
def offset_for_leader_epoch(ctx, req, *, replicas: ReplicaManager, authorizer):
    denied = set()
    if authorizer is not None and not authorizer.cluster(ctx, Operation.CLUSTER_ACTION, False):
        # A consumer checking for truncation (KIP-320) needs DESCRIBE on the topic.
        names = {t.topic for t in req.topics}
        denied = names - authorizer.allowed_names(ctx, Operation.DESCRIBE, ResourceType.TOPIC, names)
    topics = []
    for t in req.topics:
        if t.topic in denied:
            parts = [
                EpochEndOffset(partition=p.partition, error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                for p in t.partitions
            ]
        else:
            parts = [_answer(replicas, t.topic, p) for p in t.partitions]
        topics.append(OffsetForLeaderTopicResult(topic=t.topic, partitions=parts))
    return OffsetForLeaderEpochResponse(topics=topics)


def _answer(replicas, topic: str, p) -> EpochEndOffset:
    out = EpochEndOffset(partition=p.partition, error_code=ErrorCode.NONE)
    part = replicas.partition(topic, p.partition)
    try:
        if part is None:
            raise replicas.missing(topic, p.partition)
        out.leader_epoch, out.end_offset = part.end_offset_for_epoch(p.leader_epoch, p.current_leader_epoch)
    except KafkaError as exc:
        out.error_code = exc.code
    return out
