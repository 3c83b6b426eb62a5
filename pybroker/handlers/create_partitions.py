"""CreatePartitions v0-3 (api key 37).

v1 is v0 (KIP-223 throttling); v2 is flexible; v3 changes only quota
behaviour. Partitions can only be added: as Kafka's KRaft controller
(apache/kafka ControllerApis ``createPartitions``,
ReplicationControlManager ``createPartitions``) a topic named twice gets
INVALID_REQUEST, an unknown topic UNKNOWN_TOPIC_OR_PARTITION, a count equal
to or below the current one INVALID_PARTITIONS, assignments whose number is
not the number of new partitions, or that name an unknown or repeated broker
or a replica count other than the topic's, INVALID_REPLICA_ASSIGNMENT. With
validate_only nothing changes. The new partitions exist when the response
is sent; their logs are made in a worker thread, one request at a time. As
with CreateTopics, more than 10,000 new partitions in one request is a
POLICY_VIOLATION for every topic of it. The assignments given are kept
(the new partitions' replicas, the first the preferred leader); without
them the new partitions are placed as Kafka places them, with the topic's
replication factor.

In cluster mode the topic znode is rewritten (a versioned write) and the
answer waits until this broker sees a leader for every new partition, or
answers REQUEST_TIMED_OUT at the request's timeout, as Kafka's
ZooKeeper-mode broker (``ZkAdminManager.createPartitions``).
"""

from __future__ import annotations

from collections import Counter

import trio

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.create_partitions_response import CreatePartitionsResponse, CreatePartitionsTopicResult
from pybroker.protocol.registry import ApiKey

from ..cluster.admin import TopicAdmin
from ..cluster.metadata import MetadataView
from ..config import BrokerConfig
from . import Later, handles
from .create_topics import MAX_RECORDS_PER_REQUEST, TOO_MANY_RECORDS, check_assignment, place


@handles(ApiKey.CREATE_PARTITIONS, 0, 3)
def create_partitions(ctx, req, *, config: BrokerConfig, metadata: MetadataView, topics: TopicAdmin, authorizer):
    denied = set()
    if authorizer is not None:
        names = {t.name for t in req.topics}
        denied = names - authorizer.allowed_names(ctx, Operation.ALTER, ResourceType.TOPIC, names)
    added = sum(max(t.count - _current(metadata, t.name), 0) for t in req.topics)
    if added > MAX_RECORDS_PER_REQUEST:
        return CreatePartitionsResponse(
            results=[
                CreatePartitionsTopicResult(
                    name=t.name, error_code=ErrorCode.POLICY_VIOLATION, error_message=TOO_MANY_RECORDS
                )
                for t in req.topics
            ]
        )

    async def add():
        deadline = trio.current_time() + max(req.timeout_ms, 0) / 1000
        # One change at a time, each checked against the topics as they are
        # once its turn comes: another request may have grown them meanwhile.
        async with topics.admin_lock:
            counts = Counter(t.name for t in req.topics)
            results, answered = [], set()
            for topic in req.topics:
                if topic.name in answered:
                    continue
                answered.add(topic.name)
                result = CreatePartitionsTopicResult(name=topic.name, error_code=ErrorCode.NONE)
                try:
                    if counts[topic.name] > 1:
                        raise KafkaError(ErrorCode.INVALID_REQUEST, "Duplicate topic name.")
                    if topic.name in denied:
                        raise KafkaError(ErrorCode.TOPIC_AUTHORIZATION_FAILED, None)
                    await _add(config, metadata, topics, topic, req.validate_only, deadline)
                except KafkaError as exc:
                    result.error_code, result.error_message = exc.code, exc.message
                results.append(result)
            return CreatePartitionsResponse(results=results)

    return Later(add)


def _current(metadata: MetadataView, name: str) -> int:
    info = metadata.topic(name)
    return len(info.partitions) if info is not None else 0


async def _add(
    config: BrokerConfig, metadata: MetadataView, topics: TopicAdmin, topic, validate_only: bool, deadline: float
) -> None:
    info = metadata.topic(topic.name)
    if info is None:
        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None)
    current = len(info.partitions)
    if topic.count == current:
        raise KafkaError(ErrorCode.INVALID_PARTITIONS, f"Topic already has {current} partition(s).")
    if topic.count < current:
        raise KafkaError(
            ErrorCode.INVALID_PARTITIONS,
            f"The topic {topic.name} currently has {current} partition(s); {topic.count} would not be an increase.",
        )
    additional = topic.count - current
    brokers = [b.node_id for b in metadata.brokers()]
    factor = len(info.partitions[0].replicas)
    if topic.assignments is not None:
        if len(topic.assignments) != additional:
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"Attempted to add {additional} additional partition(s), but only {len(topic.assignments)} "
                "assignment(s) were specified.",
            )
        for a in topic.assignments:
            check_assignment(a.broker_ids, set(brokers), factor)
        assignments = [list(a.broker_ids) for a in topic.assignments]
    else:
        assignments = place(config, metadata, additional, factor, first_partition=current)
    if validate_only:
        return
    grown = await topics.add_partitions(topic.name, assignments, deadline=deadline)
    if grown is None:
        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The topic was deleted while its partitions were added.")
