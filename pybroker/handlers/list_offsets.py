"""ListOffsets v1-7 (api key 2).

Special timestamps: -1 latest (the high watermark for consumers, the last
stable offset for read_committed, the log end for a debug replica id -2),
-2 earliest (the log start), -3 the record with the largest timestamp (v7,
KIP-734); only the leader answers (NOT_LEADER_OR_FOLLOWER elsewhere, in
cluster mode) but for the debug replica id. Any other timestamp finds the first record at or after it, or
-1/-1 when there is none. v2 isolation level; v4 leader epochs in and out
(FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH); v6 flexible. A leader
elected in cluster mode answers a consumer's latest (or a timestamp it
finds nothing for) OFFSET_NOT_AVAILABLE while its high watermark is below
the start of its leader epoch: until its followers catch up it may not
know all the previous leader committed (Kafka's fetchOffsetForTimestamp).
A partition
listed twice gets INVALID_REQUEST, as with Kafka. A partition in an
offline log directory (or whose read fails) gets KAFKA_STORAGE_ERROR; any
other exception is logged and answered UNKNOWN_SERVER_ERROR; the other
partitions are answered as usual.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.list_offsets_response import (
    ListOffsetsPartitionResponse,
    ListOffsetsResponse,
    ListOffsetsTopicResponse,
)
from pybroker.protocol.registry import ApiKey

from . import handles

if TYPE_CHECKING:
    from ..replica import ReplicaManager

logger = logging.getLogger("pybroker.list_offsets")


@handles(ApiKey.LIST_OFFSETS, 1, 7)
def list_offsets(ctx, req, *, replicas: ReplicaManager, authorizer):
    denied = set()
    if authorizer is not None:
        names = {t.name for t in req.topics}
        denied = names - authorizer.allowed_names(ctx, Operation.DESCRIBE, ResourceType.TOPIC, names)
    seen: dict[tuple[str, int], int] = {}
    for t in req.topics:
        for p in t.partitions:
            seen[(t.name, p.partition_index)] = seen.get((t.name, p.partition_index), 0) + 1
    isolation = req.isolation_level if ctx.api_version >= 2 else 0
    topics = []
    for t in req.topics:
        parts = []
        for p in t.partitions:
            resp = ListOffsetsPartitionResponse(partition_index=p.partition_index, timestamp=-1, offset=-1, leader_epoch=-1)
            if t.name in denied:
                resp.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                parts.append(resp)
                continue
            if seen[(t.name, p.partition_index)] > 1:
                resp.error_code = ErrorCode.INVALID_REQUEST
                parts.append(resp)
                continue
            try:
                part = replicas.partition(t.name, p.partition_index)
                if part is None:
                    raise replicas.missing(t.name, p.partition_index)
                timestamp, offset, epoch = part.fetch_offset_for_timestamp(
                    p.timestamp, isolation, req.replica_id, p.current_leader_epoch
                )
                resp.timestamp, resp.offset = timestamp, offset
                if ctx.api_version >= 4:
                    resp.leader_epoch = epoch
            except KafkaError as exc:
                resp.error_code = exc.code  # timestamp, offset and epoch stay -1
            except Exception:
                logger.exception("list offsets of %s-%d failed", t.name, p.partition_index)
                resp.error_code = ErrorCode.UNKNOWN_SERVER_ERROR
            parts.append(resp)
        topics.append(ListOffsetsTopicResponse(name=t.name, partitions=parts))
    return ListOffsetsResponse(topics=topics)
