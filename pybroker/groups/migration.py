"""Online migration between classic and KIP-848 consumer groups.

Kafka 4 converts a group with members from one kind to the other while its
members keep consuming, as ``group.consumer.migration.policy`` allows
(bidirectional, the default; upgrade; downgrade; disabled):

Upgrade. A ConsumerGroupHeartbeat joining (epoch 0) a classic group that
has members turns it into a consumer group, if the policy allows upgrades,
the group uses the consumer embedded protocol (protocol type "consumer")
and its size fits group.consumer.max.size; otherwise the join gets
GROUP_ID_NOT_FOUND with Kafka's message. Every classic member becomes a
member of the consumer group that keeps using the classic protocol: its
epoch is the classic generation, its subscription and rack are read from
its metadata for the group's protocol, and its current and target
assignment are its last classic assignment (none if it never synced).
Group epoch and assignment epoch start at the generation, so the joining
member's heartbeat bumps the epoch and the server-side assignor takes
over; the classic members hear of it as REBALANCE_IN_PROGRESS. Members
whose metadata or assignment cannot be read, or whose assignment carries
user data (a custom assignor's, which would be lost), or assignments that
overlap, refuse the upgrade (GROUP_ID_NOT_FOUND). JoinGroups and
SyncGroups still waiting in the classic group are answered
REBALANCE_IN_PROGRESS.

Downgrade. When the last member using the consumer protocol leaves or is
fenced, and everyone left uses the classic protocol, the policy allows
downgrades and they fit group.max.size, the consumer group becomes a
classic group of those members instead: Stable at generation = the group
epoch, protocol type "consumer", the protocol chosen by vote, each
member's assignment its target assignment; then a rebalance starts so that
they all join the classic way.

Both conversions are pure functions from one group to the other; the
coordinator swaps the groups, writes the records of both in one batch and
(downgrade) starts the rebalance.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from pybroker.protocol.errors import DecodeError

from .classic import STABLE, ClassicGroup, GroupConfig
from .classic import Member as ClassicGroupMember
from .consumer import ConsumerGroup, ConsumerGroupConfig, resolve_subscription
from .consumer_classic import CONSUMER_PROTOCOL
from .consumer_member import ClassicMember, Member, Topics
from .embedded import decode_assignment, decode_subscription


def upgrade_refusal(group: ClassicGroup, config: ConsumerGroupConfig) -> str | None:
    """Why a classic group with members may not become a consumer group
    (the GROUP_ID_NOT_FOUND message), or None."""
    why = None
    if not config.upgrade_enabled:
        why = "online upgrade is disabled"
    elif group.protocol_type != CONSUMER_PROTOCOL:
        why = "the group does not use the consumer embedded protocol"
    elif len(group.members) > config.max_size:
        why = "the group size exceeds the consumer group maximum size"
    return None if why is None else f"Cannot upgrade classic group {group.group_id} to consumer group because {why}."


def to_consumer_group(classic: ClassicGroup, now: int, topics: Topics, config: ConsumerGroupConfig) -> ConsumerGroup | str:
    """The consumer group a classic group becomes, or why it cannot (the
    GROUP_ID_NOT_FOUND message). ``classic`` is not changed."""
    group = ConsumerGroup(classic.group_id, config)
    group.group_epoch = group.assignment_epoch = classic.generation
    malformed = (
        f"Cannot upgrade classic group {classic.group_id} to consumer group because the embedded consumer "
        "protocol is malformed."
    )
    taken: set[tuple[UUID, int]] = set()
    for m in classic.members.values():
        try:
            subscription = decode_subscription(m.metadata(classic.protocol_name)) if classic.protocol_name else None
            assigned, user_data = decode_assignment(m.assignment) if m.assignment else ({}, None)
        except DecodeError:
            return malformed
        if subscription is None:
            return malformed
        if user_data:
            return (
                f"Cannot upgrade classic group {classic.group_id} to consumer group because an unsupported custom "
                "assignor is in use. Please refer to the documentation or switch to a default assignor before "
                "re-attempting the upgrade."
            )
        partitions: dict[UUID, frozenset[int]] = {}
        for name, parts in assigned.items():
            if name in topics:
                tid, count = topics[name]
                valid = frozenset(p for p in parts if 0 <= p < count)
                if valid:
                    partitions[tid] = partitions.get(tid, frozenset()) | valid
        mine = {(tid, p) for tid, parts in partitions.items() for p in parts}
        if mine & taken:
            return malformed
        taken |= mine
        member = Member(
            m.member_id,
            epoch=classic.generation,
            previous_epoch=classic.generation,
            instance_id=m.instance_id,
            rack_id=subscription.rack_id,
            rebalance_timeout_ms=m.rebalance_timeout,
            client_id=m.client_id,
            client_host=m.client_host,
            topic_names=frozenset(subscription.topics),
            assigned=partitions,
            classic=ClassicMember(m.session_timeout, tuple(m.protocols)),
            session_deadline=now + m.session_timeout,
        )
        group.restore(member, partitions)
    group.subscription = resolve_subscription(group.members.values(), topics)
    return group


def to_classic_group(
    group: ConsumerGroup, leaving: set[str], now: int, config: GroupConfig, persist: Callable[[ClassicGroup], int]
) -> ClassicGroup | None:
    """The classic group a consumer group becomes without ``leaving``
    (Stable; the caller starts its rebalance), or None when its members
    share no protocol."""
    staying = [m for mid, m in group.members.items() if mid not in leaving]
    classic = ClassicGroup(group.group_id, now, config, persist)
    classic.generation = group.group_epoch
    classic.protocol_type = CONSUMER_PROTOCOL
    for m in staying:
        member = ClassicGroupMember(
            m.member_id, m.instance_id, m.client_id, m.client_host, m.classic.session_timeout_ms,
            m.rebalance_timeout_ms, CONSUMER_PROTOCOL, list(m.classic.protocols),
        )
        member.deadline = now + m.classic.session_timeout_ms
        classic.members[m.member_id] = member
        if m.instance_id is not None:
            classic.statics[m.instance_id] = m.member_id
    if not staying or not classic.candidates():
        return None
    classic.leader_id = staying[0].member_id
    classic.protocol_name = classic.select_protocol()
    for m in staying:
        target = group.target.get(m.member_id, {})
        classic.members[m.member_id].assignment = group.classic_assignment(m, target, classic.protocol_name)
    classic.state = STABLE
    classic.state_timestamp = now
    return classic
