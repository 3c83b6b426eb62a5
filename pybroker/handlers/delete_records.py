"""DeleteRecords v0-2 (api key 21).

v1 is v0 (throttling); v2 is flexible. Moves each partition's log start
offset up to the requested offset (-1 means the high watermark), deleting
the segments wholly below it, and returns the new log start as
``low_watermark``. As Kafka (apache/kafka KafkaApis
``handleDeleteRecordsRequest``, ReplicaManager ``deleteRecordsOnLocalLog``,
Partition ``deleteRecordsOnLeader``, UnifiedLog
``maybeIncrementLogStartOffset``): an unknown partition gets
UNKNOWN_TOPIC_OR_PARTITION, an internal topic INVALID_TOPIC_EXCEPTION, a
topic whose cleanup.policy lacks ``delete`` POLICY_VIOLATION, a negative
offset or one past the high watermark OFFSET_OUT_OF_RANGE; failed
partitions report low_watermark -1. An offset at or below the current log
start changes nothing and succeeds. A partition in an offline log
directory, or whose segment deletion fails (which takes the directory
offline), gets KAFKA_STORAGE_ERROR; any other exception is logged and
answered UNKNOWN_SERVER_ERROR.
"""

import logging

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.delete_records_response import (
    DeleteRecordsPartitionResult,
    DeleteRecordsResponse,
    DeleteRecordsTopicResult,
)
from pybroker.protocol.registry import ApiKey
from pybroker.storage.log import KafkaStorageError

from . import handles
from ..cluster.model import INTERNAL_TOPICS

logger = logging.getLogger("pybroker.delete_records")
HIGH_WATERMARK = -1
INVALID_LOW_WATERMARK = -1


@handles(ApiKey.DELETE_RECORDS, 0, 2)
def delete_records(ctx, req):
    topics = []
    for t in req.topics:
        parts = []
        for p in t.partitions:
            try:
                code, low = _delete(ctx.broker, t.name, p.partition_index, p.offset)
            except KafkaStorageError:
                code, low = ErrorCode.KAFKA_STORAGE_ERROR, INVALID_LOW_WATERMARK
            except Exception:
                logger.exception("delete records of %s-%d failed", t.name, p.partition_index)
                code, low = ErrorCode.UNKNOWN_SERVER_ERROR, INVALID_LOW_WATERMARK
            parts.append(
                DeleteRecordsPartitionResult(partition_index=p.partition_index, low_watermark=low, error_code=code)
            )
        topics.append(DeleteRecordsTopicResult(name=t.name, partitions=parts))
    return DeleteRecordsResponse(topics=topics)


def _delete(broker, topic: str, index: int, offset: int) -> tuple[ErrorCode, int]:
    part = broker.partition(topic, index)
    if part is None:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, INVALID_LOW_WATERMARK
    if topic in INTERNAL_TOPICS:
        return ErrorCode.INVALID_TOPIC_EXCEPTION, INVALID_LOW_WATERMARK
    part.check_online()
    log = part.log
    if not log.config.delete:
        return ErrorCode.POLICY_VIOLATION, INVALID_LOW_WATERMARK
    if offset == HIGH_WATERMARK:
        offset = log.high_watermark
    if offset < 0 or offset > log.high_watermark:
        return ErrorCode.OFFSET_OUT_OF_RANGE, INVALID_LOW_WATERMARK
    return ErrorCode.NONE, log.delete_records(offset)
