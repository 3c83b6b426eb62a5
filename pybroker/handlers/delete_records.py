"""DeleteRecords v0-2 (api key 21).

v1 is v0 (throttling); v2 is flexible. Moves each partition's log start
offset up to the requested offset (-1 means the high watermark), deleting
the segments wholly below it, and returns the new log start as
``low_watermark``. As Kafka (apache/kafka KafkaApis
``handleDeleteRecordsRequest``, ReplicaManager ``deleteRecordsOnLocalLog``,
Partition ``deleteRecordsOnLeader``, UnifiedLog
``maybeIncrementLogStartOffset``): an unknown partition gets
UNKNOWN_TOPIC_OR_PARTITION (one this broker does not lead, in cluster
mode, NOT_LEADER_OR_FOLLOWER), an internal topic INVALID_TOPIC_EXCEPTION, a
topic whose cleanup.policy lacks ``delete`` POLICY_VIOLATION, a negative
offset or one past the high watermark OFFSET_OUT_OF_RANGE; failed
partitions report low_watermark -1. An offset at or below the current log
start changes nothing and succeeds. A partition in an offline log
directory, or whose segment deletion fails (which takes the directory
offline), gets KAFKA_STORAGE_ERROR; any other exception is logged and
answered UNKNOWN_SERVER_ERROR.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.delete_records_response import (
    DeleteRecordsPartitionResult,
    DeleteRecordsResponse,
    DeleteRecordsTopicResult,
)
from pybroker.protocol.registry import ApiKey

from ..cluster.model import INTERNAL_TOPICS
from . import handles

if TYPE_CHECKING:
    from ..replica import ReplicaManager

logger = logging.getLogger("pybroker.delete_records")
INVALID_LOW_WATERMARK = -1


@handles(ApiKey.DELETE_RECORDS, 0, 2)
def delete_records(ctx, req, *, replicas: ReplicaManager, authorizer):
    denied = set()
    if authorizer is not None:
        names = {t.name for t in req.topics}
        denied = names - authorizer.allowed_names(ctx, Operation.DELETE, ResourceType.TOPIC, names)
    topics = []
    for t in req.topics:
        parts = []
        for p in t.partitions:
            code, low = ErrorCode.NONE, INVALID_LOW_WATERMARK
            try:
                if t.name in denied:
                    raise KafkaError(ErrorCode.TOPIC_AUTHORIZATION_FAILED, None)
                part = replicas.partition(t.name, p.partition_index)
                if part is None:
                    raise replicas.missing(t.name, p.partition_index)
                if t.name in INTERNAL_TOPICS:
                    raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, f"{t.name} is an internal topic")
                low = part.delete_records(p.offset)
            except KafkaError as exc:
                code = exc.code
            except Exception:
                logger.exception("delete records of %s-%d failed", t.name, p.partition_index)
                code = ErrorCode.UNKNOWN_SERVER_ERROR
            parts.append(
                DeleteRecordsPartitionResult(partition_index=p.partition_index, low_watermark=low, error_code=code)
            )
        topics.append(DeleteRecordsTopicResult(name=t.name, partitions=parts))
    return DeleteRecordsResponse(topics=topics)
