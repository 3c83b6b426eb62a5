"""OffsetForLeaderEpoch v2-4 (api key 23).

For each partition and leader epoch: the largest epoch at or below it
that the log knows and the offset where that epoch ended (the start of the
next epoch, or the log end offset for the leader's current epoch), which a
consumer uses to detect truncation after a leader change (KIP-320) and a
follower to truncate (KIP-101). v2 adds current_leader_epoch fencing
(FENCED_LEADER_EPOCH when older than ours, UNKNOWN_LEADER_EPOCH when
newer; -1 skips the check) and throttle time; v3 adds the replica id
(-1 for consumers; the leader answers either way, as Kafka does now);
v4 is flexible. An unknown partition gets UNKNOWN_TOPIC_OR_PARTITION, an
epoch the log cannot place epoch -1 and offset -1 without error (apache/kafka
ReplicaManager ``lastOffsetForLeaderEpoch``, Partition
``lastOffsetForLeaderEpoch``, UnifiedLog ``endOffsetForEpoch``), a
partition in an offline log directory KAFKA_STORAGE_ERROR.

Kafka's leader writes its epoch into the epoch cache when elected, before
any record; ours is written by the first append, so an epoch newer than
the cache's latest is taken to start at the log end, as it would in Kafka.
"""

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.offset_for_leader_epoch_response import (
    EpochEndOffset,
    OffsetForLeaderEpochResponse,
    OffsetForLeaderTopicResult,
)
from pybroker.protocol.registry import ApiKey
from pybroker.storage.log import KafkaStorageError

from . import handles

UNDEFINED = -1


@handles(ApiKey.OFFSET_FOR_LEADER_EPOCH, 2, 4)
def offset_for_leader_epoch(ctx, req):
    topics = []
    for t in req.topics:
        parts = [_answer(ctx.broker, t.topic, p) for p in t.partitions]
        topics.append(OffsetForLeaderTopicResult(topic=t.topic, partitions=parts))
    return OffsetForLeaderEpochResponse(topics=topics)


def _answer(broker, topic: str, p) -> EpochEndOffset:
    out = EpochEndOffset(partition=p.partition, error_code=ErrorCode.NONE)
    part = broker.partition(topic, p.partition)
    if part is None:
        out.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        return out
    try:
        part.check_online()
    except KafkaStorageError:
        out.error_code = ErrorCode.KAFKA_STORAGE_ERROR
        return out
    current = p.current_leader_epoch
    if current != UNDEFINED and current != part.leader_epoch:
        out.error_code = (
            ErrorCode.FENCED_LEADER_EPOCH if current < part.leader_epoch else ErrorCode.UNKNOWN_LEADER_EPOCH
        )
        return out
    out.leader_epoch, out.end_offset = end_offset_for(part.log, part.leader_epoch, p.leader_epoch)
    return out


def end_offset_for(log, leader_epoch: int, requested: int) -> tuple[int, int]:
    """(epoch, end offset) as Kafka's epoch cache answers, the current leader
    epoch counted as starting at the log end when the cache lacks it."""
    cache = log.epochs
    latest = cache.latest_epoch
    if requested == UNDEFINED or requested > leader_epoch:
        return UNDEFINED, UNDEFINED
    if latest is None or latest < leader_epoch:
        # The cache stands as if (leader_epoch, log end) were its last entry.
        if latest is None:
            return requested, log.log_end_offset
        if requested == leader_epoch:
            return leader_epoch, log.log_end_offset
        if requested >= latest:
            return latest, log.log_end_offset
    return cache.end_offset_for(requested, log.log_end_offset)
