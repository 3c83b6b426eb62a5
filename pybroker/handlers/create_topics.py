"""CreateTopics v2-7 (api key 19).

v1 added validate_only and error messages; v2 throttle time (our minimum,
as Kafka 4's); v3 is v2; v4 lets num_partitions and replication_factor be
-1 for the broker's ``num.partitions`` / ``default.replication.factor``
(KIP-464; we accept -1 at every version, as Kafka's broker does); v5 is
flexible and returns the new topic's partition count, replication factor
and every config with its source; v6 changes only quota behaviour; v7
returns the topic id.

Checks, in the KRaft controller's order (apache/kafka ControllerApis
``createTopics``, ReplicationControlManager ``createTopics`` /
``createTopic`` / ``validateNewTopicNames``): a name given twice gets
INVALID_REQUEST, ``__cluster_metadata`` INVALID_REQUEST; an existing topic
TOPIC_ALREADY_EXISTS; an illegal name, or one that collides with an existing
topic once '.' and '_' are equated, INVALID_TOPIC_EXCEPTION; a null, unknown
or unparsable config INVALID_CONFIG; then the layout: a manual assignment
with num_partitions or replication_factor other than -1 INVALID_REQUEST,
a bad assignment (empty, unknown or repeated broker, uneven replica counts,
indexes not 0..n-1) INVALID_REPLICA_ASSIGNMENT, a replication factor of 0 or
below -1 or above the broker count INVALID_REPLICATION_FACTOR, a partition
count of 0 or below -1 INVALID_PARTITIONS. On a single node the
request's timeout is not waited on: creation is complete when the
response is sent.

In cluster mode placement is over the live brokers, rack-aware when they
have racks (``broker.rack``), and a factor above their number gets
Kafka's ZooKeeper-mode message (``AdminUtils.assignReplicasToBrokers``);
the topic is written to ZooKeeper and answered once this broker sees a
leader for every partition, or REQUEST_TIMED_OUT at the request's timeout
(the topic is created all the same), as Kafka's ``ZkAdminManager``.

A manual assignment is kept as given: partition ``i`` gets the replicas
listed for it, the first its preferred leader. Otherwise the replicas are
placed as Kafka places them (``cluster.placement``).

Kafka's bounds on one request (ReplicationControlManager): more than
10,000 partitions requested in all, or more than 10,000 metadata records
(a topic, each of its partitions and each config is one), and every topic
of the request gets POLICY_VIOLATION, validate_only or not. The logs of
the topics that pass are made in a worker thread (``create_topic_async``),
so a large topic does not hold up other clients; a name being created
counts as existing meanwhile.
"""

from __future__ import annotations

from collections import Counter

import trio

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.create_topics_response import (
    CreatableTopicConfigs,
    CreatableTopicResult,
    CreateTopicsResponse,
)
from pybroker.protocol.registry import ApiKey

from .. import topic_configs as tc
from ..cluster.admin import TopicAdmin, topic_name_problem
from ..cluster.metadata import MetadataView
from ..cluster.placement import assign_replicas
from ..config import BrokerConfig
from . import Later, handles

# ReplicationControlManager.MAX_PARTITIONS_PER_BATCH and
# QuorumController.MAX_RECORDS_PER_USER_OP.
MAX_PARTITIONS_PER_REQUEST = 10_000
MAX_RECORDS_PER_REQUEST = 10_000
TOO_MANY_PARTITIONS = "Excessively large number of partitions per request."
TOO_MANY_RECORDS = "Unable to perform excessively large batch operation."


@handles(ApiKey.CREATE_TOPICS, 2, 7)
def create_topics(ctx, req, *, config: BrokerConfig, metadata: MetadataView, topics: TopicAdmin, authorizer):
    if _requested_partitions(config, req.topics) > MAX_PARTITIONS_PER_REQUEST:
        return _refuse_all(req.topics, TOO_MANY_PARTITIONS)
    counts = Counter(t.name for t in req.topics)
    results, answered = [], set()
    to_create = []  # (result, assignment, configs)
    records = 0
    for topic in req.topics:
        if topic.name in answered:
            continue
        answered.add(topic.name)
        try:
            if counts[topic.name] > 1:
                raise KafkaError(ErrorCode.INVALID_REQUEST, "Duplicate topic name.")
            if authorizer is not None and not _may_create(ctx, authorizer, topic.name):
                raise KafkaError(ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Authorization failed.")
            result, assignment, configs = _validate(ctx.api_version, config, metadata, topics, topic)
        except KafkaError as exc:
            results.append(CreatableTopicResult(name=topic.name, error_code=exc.code, error_message=exc.message))
            continue
        if authorizer is not None and ctx.api_version >= 5 and not authorizer.allowed(
            ctx, Operation.DESCRIBE_CONFIGS, ResourceType.TOPIC, topic.name, False
        ):
            result.topic_config_error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            result.configs = None
        records += 1 + len(assignment) + len(configs)
        results.append(result)
        to_create.append((result, assignment, configs))
        # Taken from now on: later topics of this request, and every other
        # request, see it as existing (and colliding).
        topics.reserve_names([topic.name])
    names = [result.name for result, _, _ in to_create]
    if records > MAX_RECORDS_PER_REQUEST or req.validate_only or not to_create:
        topics.release_names(names)
        if records > MAX_RECORDS_PER_REQUEST:
            return _refuse_all(req.topics, TOO_MANY_RECORDS)
        return CreateTopicsResponse(topics=results)
    response = CreateTopicsResponse(topics=results)

    async def create():
        deadline = trio.current_time() + max(req.timeout_ms, 0) / 1000
        try:
            for result, assignment, configs in to_create:
                try:
                    info = await topics.create_topic_async(result.name, assignment, configs, deadline=deadline)
                except KafkaError as exc:
                    result.error_code, result.error_message = exc.code, exc.message
                    continue
                if ctx.api_version >= 7:
                    result.topic_id = info.topic_id
        finally:
            topics.release_names(names)
        return response

    return Later(create)


def _may_create(ctx, authorizer, name: str) -> bool:
    """CREATE on the cluster, or else on the topic."""
    return authorizer.cluster(ctx, Operation.CREATE, False) or authorizer.allowed(
        ctx, Operation.CREATE, ResourceType.TOPIC, name
    )


def _requested_partitions(config: BrokerConfig, topics) -> int:
    """Kafka's upper bound, counted before any other check."""
    total = 0
    for topic in topics:
        if topic.assignments:
            total += len(topic.assignments)
        elif topic.num_partitions == -1:
            total += config["num.partitions"]
        elif topic.num_partitions > 0:
            total += topic.num_partitions
    return total


def _refuse_all(topics, message: str) -> CreateTopicsResponse:
    return CreateTopicsResponse(
        topics=[
            CreatableTopicResult(name=t.name, error_code=ErrorCode.POLICY_VIOLATION, error_message=message)
            for t in topics
        ]
    )


def _validate(
    version: int, config: BrokerConfig, metadata: MetadataView, topics: TopicAdmin, topic
) -> tuple[CreatableTopicResult, list[list[int]], dict[str, str]]:
    """The topic's result as if created, its replica assignment and configs;
    KafkaError when it cannot be created."""
    name = topic.name
    if name == tc.INTERNAL_METADATA_TOPIC:
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"Creation of internal topic {name} is prohibited.")
    if metadata.topic(name) is not None or name in topics.reserved_names():
        raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
    problem = topic_name_problem(name)
    if problem:
        raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, problem)
    _check_collision(metadata, topics, name)
    configs = _configs(config, topic)
    assignment, replicas = _layout(config, metadata, topic)
    result = CreatableTopicResult(name=name, error_code=ErrorCode.NONE, error_message=None)
    if version >= 5:
        result.num_partitions = len(assignment)
        result.replication_factor = replicas
        result.configs = [
            CreatableTopicConfigs(
                name=e.name, value=e.value, read_only=e.read_only, config_source=e.source, is_sensitive=e.is_sensitive
            )
            for e in tc.created_topic_configs(config, configs)
        ]
    return result, assignment, configs


def _check_collision(metadata: MetadataView, topics: TopicAdmin, name: str) -> None:
    if "." not in name and "_" not in name:
        return
    unified = name.replace(".", "_")
    for other in [*(t.name for t in metadata.all_topics()), *topics.reserved_names()]:
        if other.replace(".", "_") == unified:
            raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, f"Topic '{name}' collides with existing topic: {other}")


def _configs(config: BrokerConfig, topic) -> dict[str, str]:
    nulls = [c.name for c in topic.configs if c.value is None]
    if nulls:
        raise KafkaError(ErrorCode.INVALID_CONFIG, "Null value not supported for topic configs: " + ",".join(nulls))
    configs = {c.name: c.value for c in topic.configs}
    problem = tc.topic_config_problem(configs, config.log_config)
    if problem:
        raise KafkaError(ErrorCode.INVALID_CONFIG, problem)
    return configs


def _layout(config: BrokerConfig, metadata: MetadataView, topic) -> tuple[list[list[int]], int]:
    """(replicas of each partition, replication factor) after Kafka's checks."""
    brokers = {b.node_id for b in metadata.brokers()}
    if topic.assignments:
        if topic.replication_factor != -1:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST,
                "A manual partition assignment was specified, but replication factor was not set to -1.",
            )
        if topic.num_partitions != -1:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST,
                "A manual partition assignment was specified, but numPartitions was not set to -1.",
            )
        given: dict[int, list[int]] = {}
        factor = None
        for a in topic.assignments:
            if a.partition_index in given:
                raise KafkaError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"Found multiple manual partition assignments for partition {a.partition_index}",
                )
            given[a.partition_index] = list(a.broker_ids)
            check_assignment(a.broker_ids, brokers, factor)
            factor = len(a.broker_ids)
        if set(given) != set(range(len(given))):
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT, "partitions should be a consecutive 0-based integer sequence"
            )
        return [given[i] for i in range(len(given))], factor
    if topic.replication_factor < -1 or topic.replication_factor == 0:
        raise KafkaError(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            "Replication factor must be larger than 0, or -1 to use the default value.",
        )
    if topic.num_partitions < -1 or topic.num_partitions == 0:
        raise KafkaError(ErrorCode.INVALID_PARTITIONS, "Number of partitions was set to an invalid non-positive value.")
    partitions = config["num.partitions"] if topic.num_partitions == -1 else topic.num_partitions
    factor = config["default.replication.factor"] if topic.replication_factor == -1 else topic.replication_factor
    return place(config, metadata, partitions, factor), factor


def place(config: BrokerConfig, metadata: MetadataView, partitions: int, factor: int, first_partition: int = 0):
    """New partitions' replicas over the brokers the metadata knows (live
    ones, in cluster mode), rack-aware when they have racks."""
    brokers = metadata.brokers()
    if factor > len(brokers):
        raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR, replication_factor_problem(config, factor, len(brokers)))
    racks = {b.node_id: b.rack for b in brokers}
    try:
        return assign_replicas(list(racks), partitions, factor, racks=racks, first_partition=first_partition)
    except ValueError as exc:  # racks on some brokers only, say
        raise KafkaError(ErrorCode.INVALID_REPLICATION_FACTOR, str(exc)) from None


def replication_factor_problem(config: BrokerConfig, factor: int, brokers: int) -> str:
    """Kafka's message for a factor above the broker count: its
    ZooKeeper-mode broker's in cluster mode, its KRaft controller's on a
    single node (as before there was a cluster mode)."""
    if config.cluster_mode:
        return f"Replication factor: {factor} larger than available brokers: {brokers}."
    return (
        f"Unable to replicate the partition {factor} time(s): The target replication factor of {factor} "
        f"cannot be reached because only {brokers} broker(s) are registered."
    )


def check_assignment(broker_ids: list[int], brokers: set[int], factor: int | None) -> None:
    """Kafka's validateManualPartitionAssignment (shared with CreatePartitions)."""
    if not broker_ids:
        raise KafkaError(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT, "The manual partition assignment includes an empty replica list."
        )
    previous = None
    for node in sorted(broker_ids):
        if node not in brokers:
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"The manual partition assignment includes broker {node}, but no such broker is registered.",
            )
        if node == previous:
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"The manual partition assignment includes the broker {node} more than once.",
            )
        previous = node
    if factor is not None and len(broker_ids) != factor:
        raise KafkaError(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            f"The manual partition assignment includes a partition with {len(broker_ids)} replica(s), but this is "
            f"not consistent with previous partitions, which have {factor} replica(s).",
        )
