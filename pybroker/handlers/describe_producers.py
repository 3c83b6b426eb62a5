"""DescribeProducers v0 (api key 61, KIP-664; flexible).

For each partition asked: the producers its log's producer state holds
(those not yet expired by ``producer.id.expiration.ms``), each with its
epoch, the last sequence and the timestamp of its last batch, sorted by
producer id, the epoch of the last coordinator that wrote it a marker
(-1: none) and the first offset of its open transaction (-1: none).

Any replica answers from its own log, leader or follower, as Kafka's
does (ReplicaManager ``activeProducerState``; its test: "supported by both
leaders and followers"); admin clients ask the leader unless told which
broker to ask. Errors, as Kafka's KafkaApis ``handleDescribeProducersRequest``:
an invalid topic name INVALID_TOPIC_EXCEPTION and a topic the metadata does
not know UNKNOWN_TOPIC_OR_PARTITION for each of its partitions; then per
partition (``getPartitionOrError``) a partition of an existing topic that
this broker holds no replica of NOT_LEADER_OR_FOLLOWER, one that does not
exist UNKNOWN_TOPIC_OR_PARTITION, one in an offline log directory
KAFKA_STORAGE_ERROR. Any other failure is logged and costs its partition
alone UNKNOWN_SERVER_ERROR. There are no ACLs, so no
TOPIC_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.describe_producers_response import (
    DescribeProducersResponse,
    PartitionResponse,
    ProducerState,
    TopicResponse,
)
from pybroker.protocol.registry import ApiKey

from ..cluster.admin import topic_name_problem
from . import handles

if TYPE_CHECKING:
    from ..cluster.metadata import MetadataView
    from ..replica import ReplicaManager

logger = logging.getLogger("pybroker.describe_producers")

NO_TXN_START_OFFSET = -1
NO_TIMESTAMP = -1


@handles(ApiKey.DESCRIBE_PRODUCERS, 0, 0)
def describe_producers(ctx, req, *, replicas: ReplicaManager, metadata: MetadataView, authorizer):
    topics = []
    for t in req.topics:
        if authorizer is not None and not authorizer.allowed(ctx, Operation.READ, ResourceType.TOPIC, t.name):
            refused = KafkaError(ErrorCode.TOPIC_AUTHORIZATION_FAILED, None)
        else:
            refused = _topic_error(metadata, t.name)
        if refused is not None:
            parts = [
                PartitionResponse(partition_index=i, error_code=refused.code, error_message=refused.message)
                for i in t.partition_indexes
            ]
        else:
            parts = [_partition(replicas, t.name, i) for i in t.partition_indexes]
        topics.append(TopicResponse(name=t.name, partitions=parts))
    return DescribeProducersResponse(topics=topics)


def _topic_error(metadata: MetadataView, name: str) -> KafkaError | None:
    problem = topic_name_problem(name)
    if problem:
        return KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, problem)
    if metadata.topic(name) is None:
        return KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION.message)
    return None


def _partition(replicas: ReplicaManager, topic: str, index: int) -> PartitionResponse:
    out = PartitionResponse(partition_index=index, error_code=ErrorCode.NONE)
    try:
        part = replicas.partition(topic, index)
        if part is None:
            raise replicas.missing(topic, index)
        part.check_online()
        out.active_producers = _active_producers(part.log.producers.entries)
    except KafkaError as exc:
        # Kafka answers these with the code alone.
        out.error_code = exc.code
    except Exception:
        logger.exception("describing the producers of %s-%d failed", topic, index)
        out.error_code = ErrorCode.UNKNOWN_SERVER_ERROR
    return out


def _active_producers(entries: dict) -> list[ProducerState]:
    out = []
    for pid in sorted(entries):
        entry = entries[pid]
        last = entry.batches[-1] if entry.batches else None
        txn_start = entry.current_txn_first_offset
        out.append(
            ProducerState(
                producer_id=pid,
                producer_epoch=entry.epoch,
                last_sequence=last.last_seq if last is not None else -1,
                last_timestamp=last.timestamp if last is not None else NO_TIMESTAMP,
                coordinator_epoch=entry.coordinator_epoch,
                current_txn_start_offset=NO_TXN_START_OFFSET if txn_start is None else txn_start,
            )
        )
    return out
