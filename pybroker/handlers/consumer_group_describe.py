"""ConsumerGroupDescribe v0 (api key 69, KIP-848).

Each named consumer group: state (Empty, Assigning, Reconciling, Stable),
group epoch, assignment epoch, the assignor in use (the one most members
ask for, else the default) and every member with its epoch, client, rack,
subscription, current assignment and target assignment (topic ids with
their names; topics that no longer exist are left out, as Kafka does).
An empty group id gets INVALID_GROUP_ID; a group that does not exist, or
is a classic group, GROUP_ID_NOT_FOUND with a message (what admin clients,
librdkafka's among them, take as "try DescribeGroups"). Authorized
operations, when asked for, are everything a group supports (there is no
authorizer): READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
Kafka 4.1's v1 (the member type) is not in our schemas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.consumer_group_describe_response import (
    Assignment,
    ConsumerGroupDescribeResponse,
    DescribedGroup,
    Member,
    TopicPartitions,
)
from pybroker.protocol.registry import ApiKey

from ..groups.consumer import ConsumerGroup
from . import handles
from .metadata import ALTER_CONFIGS, DELETE, DESCRIBE, DESCRIBE_CONFIGS, NOT_REQUESTED, READ

if TYPE_CHECKING:
    from ..groups.coordinator import GroupCoordinator

GROUP_OPERATIONS = sum(1 << op for op in (READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS))


@handles(ApiKey.CONSUMER_GROUP_DESCRIBE, 0, 0)
def consumer_group_describe(ctx, req, *, groups: GroupCoordinator, authorizer):
    ops = GROUP_OPERATIONS if req.include_authorized_operations else NOT_REQUESTED
    coordinator = groups
    topics = coordinator.topics
    described = []
    for group_id in req.group_ids:
        if authorizer is not None:
            if not authorizer.allowed(ctx, Operation.DESCRIBE, ResourceType.GROUP, group_id):
                described.append(DescribedGroup(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, group_id=group_id))
                continue
            if req.include_authorized_operations:
                ops = authorizer.operations(ctx, ResourceType.GROUP, group_id)
        if not group_id:
            described.append(DescribedGroup(error_code=ErrorCode.INVALID_GROUP_ID, group_id=group_id))
            continue
        status = coordinator.status(group_id)
        if status != ErrorCode.NONE:
            described.append(DescribedGroup(error_code=status, group_id=group_id))
            continue
        group = coordinator.get(group_id)
        if not isinstance(group, ConsumerGroup):
            message = f"Group {group_id} not found." if group is None else f"Group {group_id} is not a consumer group."
            described.append(
                DescribedGroup(error_code=ErrorCode.GROUP_ID_NOT_FOUND, error_message=message, group_id=group_id)
            )
            continue
        described.append(
            DescribedGroup(
                group_id=group_id,
                group_state=group.state,
                group_epoch=group.group_epoch,
                assignment_epoch=group.assignment_epoch,
                assignor_name=group.preferred_assignor(),
                members=[
                    Member(
                        member_id=m.member_id,
                        instance_id=m.instance_id,
                        rack_id=m.rack_id,
                        member_epoch=m.epoch,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        subscribed_topic_names=sorted(m.topic_names),
                        subscribed_topic_regex=m.topic_regex,
                        assignment=_assignment(topics, m.assigned),
                        target_assignment=_assignment(topics, group.target.get(m.member_id, {})),
                    )
                    for m in group.members.values()
                ],
                authorized_operations=ops,
            )
        )
    return ConsumerGroupDescribeResponse(groups=described)


def _assignment(topics, partitions) -> Assignment:
    out = []
    for tid, parts in sorted(partitions.items()):
        name = topics.name_of(tid)
        if name is not None:
            out.append(TopicPartitions(topic_id=tid, topic_name=name, partitions=sorted(parts)))
    return Assignment(topic_partitions=out)
