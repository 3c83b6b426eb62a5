"""Metadata v0-12 (api key 3).

v0: an empty topic list means all topics; v1+: null means all, empty means
none, and adds controller id, rack and is_internal; v2 cluster id; v4 the
client's allow_auto_topic_creation (before v4 auto-creation is implied);
v5 offline replicas; v7 leader epochs; v8 authorized operations (without
an authorizer everything a topic or cluster supports, as Kafka reports
it); v9 flexible; v10 topic ids, also as lookup keys
(unknown ids get UNKNOWN_TOPIC_ID); v11 drops the cluster operations.

Each partition is answered from the metadata: its assigned replicas, and
its leader, leader epoch and ISR from its state. As Kafka's metadata cache
(ZkMetadataCache ``getPartitionMetadata``) a replica on a broker that is not
registered is offline, and a leader that is not registered is no leader:
LEADER_NOT_AVAILABLE with leader -1. A partition whose log directory has
failed here is reported as Kafka's controller leaves a single replica that
went offline: LEADER_NOT_AVAILABLE, no leader (-1), and this broker among
its offline replicas. So is a partition led here while this broker's
leader lease has lapsed (replica/lease.py).

In cluster mode the answer comes from this broker's cache of ZooKeeper
(every live broker, the controller, each partition's state), the same on
every broker once a change has reached them; a topic auto-created here is
written to ZooKeeper in the background and answered LEADER_NOT_AVAILABLE,
as Kafka's ZooKeeper-mode broker answers (``AutoTopicCreationManager``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pybroker.acl import CLUSTER_NAME, Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.metadata_response import (
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from pybroker.protocol.primitives import ZERO_UUID
from pybroker.protocol.registry import ApiKey

from ..cluster.admin import TopicAdmin, topic_name_problem
from ..cluster.metadata import MetadataView
from ..cluster.model import INTERNAL_TOPICS
from ..config import BrokerConfig
from . import handles

if TYPE_CHECKING:
    from ..partition import Partition


class HostedPartitions(Protocol):
    """The one thing Metadata asks of the replica manager."""

    def partition(self, topic: str, index: int) -> Partition | None: ...

    def serving(self) -> bool: ...


# AclOperation codes (Kafka's org.apache.kafka.common.acl.AclOperation).
READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE = (
    3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
)
TOPIC_OPERATIONS = sum(1 << op for op in (READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS))
CLUSTER_OPERATIONS = sum(
    1 << op for op in (CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE)
)
NOT_REQUESTED = -(2**31)


@handles(ApiKey.METADATA, 0, 12)
def metadata(
    ctx, req, *, config: BrokerConfig, metadata: MetadataView, topics: TopicAdmin, replicas: HostedPartitions,
    authorizer,
):
    version = ctx.api_version
    md = metadata
    want_ops = version >= 8 and req.include_topic_authorized_operations
    auto_create = version < 4 or req.allow_auto_topic_creation
    node_id = config.node_id
    brokers = md.brokers()
    live = frozenset(b.node_id for b in brokers)
    # A client is given the brokers' addresses on the listener it came in
    # on; a broker without that listener is left out (as Kafka does).
    listed = [(b, address) for b in brokers if (address := b.address(ctx.listener)) is not None]
    # A live leader without that listener: the client cannot reach it, and
    # is told so (LISTENER_NOT_FOUND from v6, Kafka's MetadataCache).
    unreachable = live - {b.node_id for b, _ in listed}
    no_listener = ErrorCode.LISTENER_NOT_FOUND if version >= 6 else ErrorCode.LEADER_NOT_AVAILABLE

    def describe(info) -> MetadataResponseTopic:
        found = _topic(replicas, node_id, live, info, want_ops)
        if unreachable:
            for entry in found.partitions:
                if entry.leader_id in unreachable:
                    entry.error_code, entry.leader_id = no_listener, -1
        return found

    if req.topics is None or (version == 0 and not req.topics):
        listed_topics = md.all_topics()
        if authorizer is not None:  # the others are left out, silently
            listed_topics = [
                i for i in listed_topics if authorizer.allowed(ctx, Operation.DESCRIBE, ResourceType.TOPIC, i.name, False)
            ]
        found = [describe(info) for info in listed_topics]
    else:
        found = []
        for wanted in req.topics:
            if version >= 10 and wanted.name is None:
                info = md.topic_by_id(wanted.topic_id)
                if info is None:
                    found.append(MetadataResponseTopic(error_code=ErrorCode.UNKNOWN_TOPIC_ID, name=None, topic_id=wanted.topic_id))
                    continue
                if authorizer is not None and not authorizer.allowed(
                    ctx, Operation.DESCRIBE, ResourceType.TOPIC, info.name
                ):
                    found.append(_unauthorized(None, wanted.topic_id))
                    continue
            else:
                if authorizer is not None and not _may_see(ctx, authorizer, config, md, wanted.name, auto_create):
                    found.append(_unauthorized(wanted.name, ZERO_UUID))
                    continue
                info = md.topic(wanted.name)
                if info is None and auto_create:
                    try:
                        info = topics.auto_create_topic(wanted.name)
                    except KafkaError as exc:  # cluster mode: being created (LEADER_NOT_AVAILABLE), or refused
                        found.append(
                            MetadataResponseTopic(
                                error_code=exc.code,
                                name=wanted.name,
                                topic_id=ZERO_UUID,
                                is_internal=wanted.name in INTERNAL_TOPICS,
                            )
                        )
                        continue
                if info is None:
                    code = ErrorCode.INVALID_TOPIC_EXCEPTION if topic_name_problem(wanted.name) else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                    found.append(MetadataResponseTopic(error_code=code, name=wanted.name, topic_id=ZERO_UUID))
                    continue
            found.append(describe(info))
    cluster_ops = NOT_REQUESTED
    if 8 <= version <= 10 and req.include_cluster_authorized_operations:
        cluster_ops = CLUSTER_OPERATIONS
        if authorizer is not None:
            cluster_ops = (
                authorizer.operations(ctx, ResourceType.CLUSTER, CLUSTER_NAME)
                if authorizer.cluster(ctx, Operation.DESCRIBE) else 0
            )
    if authorizer is not None and want_ops:
        for t in found:
            if t.error_code != ErrorCode.TOPIC_AUTHORIZATION_FAILED and t.name is not None:
                t.topic_authorized_operations = authorizer.operations(ctx, ResourceType.TOPIC, t.name)
    return MetadataResponse(
        brokers=[
            MetadataResponseBroker(node_id=b.node_id, host=address[0], port=address[1], rack=b.rack)
            for b, address in listed
        ],
        cluster_id=md.cluster_id,
        controller_id=md.controller_id,
        topics=found,
        cluster_authorized_operations=cluster_ops,
    )


def _may_see(ctx, authorizer, config, md, name: str, auto_create: bool) -> bool:
    """DESCRIBE on the topic; and, to have it auto-created, CREATE on the
    cluster or on the topic (KafkaApis.handleTopicMetadataRequest)."""
    if not authorizer.allowed(ctx, Operation.DESCRIBE, ResourceType.TOPIC, name):
        return False
    if not auto_create or not config["auto.create.topics.enable"] or md.topic(name) is not None:
        return True
    return authorizer.cluster(ctx, Operation.CREATE, False) or authorizer.allowed(
        ctx, Operation.CREATE, ResourceType.TOPIC, name
    )


def _unauthorized(name, topic_id) -> MetadataResponseTopic:
    return MetadataResponseTopic(
        error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED, name=name, topic_id=topic_id,
        is_internal=name in INTERNAL_TOPICS,
    )


def _topic(replicas: HostedPartitions, node_id: int, live: frozenset, info, want_ops: bool) -> MetadataResponseTopic:
    return MetadataResponseTopic(
        error_code=ErrorCode.NONE,
        name=info.name,
        topic_id=info.topic_id,
        is_internal=info.is_internal,
        partitions=[_partition(replicas, node_id, live, info.name, p) for p in info.partitions],
        topic_authorized_operations=TOPIC_OPERATIONS if want_ops else NOT_REQUESTED,
    )


def _partition(replicas: HostedPartitions, node_id: int, live: frozenset, topic: str, p) -> MetadataResponsePartition:
    """The partition's assignment and state; a replica here whose log dir
    has failed is offline, and a partition it led has no leader."""
    entry = MetadataResponsePartition(
        error_code=ErrorCode.NONE,
        partition_index=p.index,
        leader_id=p.leader,
        leader_epoch=p.leader_epoch,
        replica_nodes=list(p.replicas),
        isr_nodes=list(p.isr),
        offline_replicas=[*p.offline, *(r for r in p.replicas if r not in live and r not in p.offline)],
    )
    if p.leader not in live or (p.leader == node_id and not replicas.serving()):
        # A leader here whose lease lapsed may have been replaced already:
        # clients are sent to look elsewhere.
        entry.error_code = ErrorCode.LEADER_NOT_AVAILABLE
        entry.leader_id = -1
    part = replicas.partition(topic, p.index)
    if part is not None and part.offline:
        if p.leader == node_id:
            entry.error_code = ErrorCode.LEADER_NOT_AVAILABLE
            entry.leader_id = -1
        if node_id not in entry.offline_replicas:
            entry.offline_replicas.append(node_id)
    return entry
