"""The classic protocol's requests answered by a KIP-848 consumer group.

KIP-848's online migration keeps consumers that still speak JoinGroup,
SyncGroup, Heartbeat and LeaveGroup working in a consumer group: a group
converted from a classic one starts with nothing but such members, and
they may join a consumer group like any other consumer. The group treats
them as members like the rest (the coordinator's assignor decides their
partitions; they reconcile towards their targets); only the way they hear
of it differs:

* JoinGroup is answered at once, never after a join phase: the member is
  added or updated from its subscription (topics, owned partitions, rack,
  read from the consumer embedded protocol), the group epoch is bumped if
  its subscription changed, and the member takes one reconciliation step
  with the partitions it says it owns. The answer carries the member's
  epoch as the generation, the first protocol it offered, no leader and
  no member list: the client is a follower and runs no assignor.
* SyncGroup returns the member's current assignment (in the consumer
  embedded protocol, at its subscription's version); REBALANCE_IN_PROGRESS
  when the group epoch moved past the member's while it was not still
  revoking.
* Heartbeat answers REBALANCE_IN_PROGRESS when the member should join
  again: its epoch is behind the group's, it must revoke partitions, or
  the partitions it was waiting for are free now. From then it has its
  rebalance timeout to join; after a join, the same to sync; else it is
  fenced (``tick``).
* LeaveGroup removes the members named (by member id, or by instance id
  for static members) and bumps the group epoch once.

A static member using the consumer protocol whose instance comes back
with the classic protocol is replaced at once; if it was the last member
using the consumer protocol, the group asks to become a classic group
(Kafka's online downgrade by static member replacement).

Errors and their order are those of Kafka's GroupMetadataManager
(classicGroupJoinToConsumerGroup and its siblings). A request from a
member that uses the consumer protocol gets UNKNOWN_MEMBER_ID.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import DecodeError

from .classic import NO_DEADLINE, JoinResult, SyncResult
from .consumer_member import (
    UNRELEASED_PARTITIONS,
    UNREVOKED_PARTITIONS,
    ClassicMember,
    Member,
    Topics,
    new_member_id,
)
from .embedded import decode_subscription, encode_assignment, metadata_version

CONSUMER_PROTOCOL = "consumer"


class ClassicMembers:
    """Mixed into ConsumerGroup: the classic requests of its members."""

    def supports_classic(self, protocol_type: str, names: Iterable[str]) -> bool:
        """A classic member may join if it uses the consumer embedded
        protocol and offers a protocol that every classic member offers."""
        names = list(names)
        if protocol_type != CONSUMER_PROTOCOL:
            return False
        offered = [{n for n, _ in m.classic.protocols} for m in self.members.values() if m.classic is not None]
        return any(all(name in o for o in offered) for name in names)

    def join(
        self,
        now: int,
        *,
        member_id: str,
        instance_id: str | None,
        client_id: str,
        client_host: str,
        session_timeout: int,
        rebalance_timeout: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        require_known_member_id: bool,
        topics: Topics,
        supports_skip_assignment: bool = False,
        callback: Callable[[JoinResult], None] | None = None,
    ) -> JoinResult:
        """A JoinGroup of a classic member, answered at once."""
        requested = member_id
        unknown = not member_id
        if unknown:
            member_id = new_member_id()
        if self._full_error(member_id) is not None:
            return JoinResult(ErrorCode.GROUP_MAX_SIZE_REACHED, requested)
        if not self.supports_classic(protocol_type, [n for n, _ in protocols]):
            return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, requested)
        if unknown and require_known_member_id:
            return JoinResult(ErrorCode.MEMBER_ID_REQUIRED, member_id)
        if instance_id is None:
            member, replaced = self.members.get(member_id) or Member(member_id), None
        else:
            existing = self.members.get(self.statics.get(instance_id, ""))
            if unknown:
                if existing is None:
                    member, replaced = Member(member_id), None
                else:
                    # A restarted static member takes its predecessor's place.
                    member = replace(
                        existing, member_id=member_id, epoch=0, previous_epoch=0,
                        session_deadline=NO_DEADLINE, rebalance_deadline=NO_DEADLINE, rebalance_epoch=-1,
                        join_deadline=NO_DEADLINE, sync_deadline=NO_DEADLINE,
                    )
                    replaced = existing.member_id
            elif existing is None:
                return JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, requested)
            elif existing.member_id != member_id:
                return JoinResult(ErrorCode.FENCED_INSTANCE_ID, requested)
            else:
                member, replaced = existing, None
        try:
            subscription = decode_subscription(protocols[0][1])
        except DecodeError:
            return JoinResult(ErrorCode.UNKNOWN_SERVER_ERROR, requested)
        owned = {}
        for name, parts in subscription.owned.items():
            if name in topics:
                owned[topics[name][0]] = frozenset(parts)
        updated = replace(
            member,
            instance_id=instance_id if instance_id is not None else member.instance_id,
            rack_id=subscription.rack_id if subscription.rack_id is not None else member.rack_id,
            rebalance_timeout_ms=rebalance_timeout if rebalance_timeout != -1 else member.rebalance_timeout_ms,
            topic_names=frozenset(subscription.topics),
            client_id=client_id,
            client_host=client_host,
            classic=ClassicMember(session_timeout, tuple((n, bytes(m)) for n, m in protocols)),
        )
        last_consumer_member = replaced is not None and self.members[replaced].classic is None
        epoch = self.group_epoch
        reconciled = self._update(now, member, updated, replaced, owned, topics)
        if last_consumer_member and self.may_downgrade(set()) and self.downgrade is not None:
            # The last consumer-protocol member was a static member whose
            # instance came back with the classic protocol: the group
            # becomes classic, and rebalances only if the subscription moved.
            self.replaced = self.downgrade(self, now, set(), self.group_epoch != epoch)
        reconciled.session_deadline = now + session_timeout
        reconciled.join_deadline = NO_DEADLINE
        reconciled.sync_deadline = now + reconciled.rebalance_timeout_ms
        return JoinResult(
            ErrorCode.NONE,
            reconciled.member_id,
            reconciled.epoch,
            CONSUMER_PROTOCOL,
            reconciled.classic.protocol_name,
        )

    def sync(
        self,
        now: int,
        *,
        member_id: str,
        instance_id: str | None,
        generation: int,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict | None = None,
        callback: Callable[[SyncResult], None] | None = None,
    ) -> SyncResult:
        """A SyncGroup of a classic member: its current assignment."""
        member = self._classic_member(member_id, instance_id)
        if isinstance(member, ErrorCode):
            return SyncResult(member)
        if generation != member.epoch:
            return SyncResult(ErrorCode.ILLEGAL_GENERATION)
        if (protocol_type is not None and protocol_type != CONSUMER_PROTOCOL) or (
            protocol_name is not None and protocol_name != member.classic.protocol_name
        ):
            return SyncResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        # A member still revoking has joined already: it finishes that first.
        if self.group_epoch > member.epoch and member.state != UNREVOKED_PARTITIONS:
            self._expect_join(member, now)
            return SyncResult(ErrorCode.REBALANCE_IN_PROGRESS)
        member.sync_deadline = NO_DEADLINE
        member.session_deadline = now + member.classic.session_timeout_ms
        return SyncResult(ErrorCode.NONE, protocol_type, protocol_name, self.classic_assignment(member, member.assigned))

    def heartbeat(self, now: int, member_id: str, instance_id: str | None, generation: int) -> ErrorCode:
        member = self._classic_member(member_id, instance_id)
        if isinstance(member, ErrorCode):
            return member
        if generation != member.epoch:
            return ErrorCode.ILLEGAL_GENERATION
        member.session_deadline = now + member.classic.session_timeout_ms
        if (
            member.epoch < self.group_epoch
            or member.state == UNREVOKED_PARTITIONS
            or (member.state == UNRELEASED_PARTITIONS and not self._waiting_on_unreleased(member))
        ):
            self._expect_join(member, now)
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def leave_members(self, now: int, leaving: list[tuple[str, str | None]]) -> list[tuple[str, str | None, ErrorCode]]:
        """A LeaveGroup: (member id, instance id, error) per member named;
        for a static member named by instance id alone, the member id found.
        The group epoch is bumped once if anyone left."""
        results = []
        gone: list[str] = []
        for member_id, instance_id in leaving:
            if instance_id is None:
                member = self.members.get(member_id)
                error = None if member is not None else ErrorCode.UNKNOWN_MEMBER_ID
            else:
                member = self.members.get(self.statics.get(instance_id, ""))
                if member is None:
                    error = ErrorCode.UNKNOWN_MEMBER_ID
                elif member_id and member.member_id != member_id:
                    error = ErrorCode.FENCED_INSTANCE_ID
                else:
                    error = None
            if error is None and member.classic is None:
                error = ErrorCode.UNKNOWN_MEMBER_ID
            if error is not None:
                results.append((member_id, instance_id, error))
                continue
            if member.member_id not in gone:
                gone.append(member.member_id)
            results.append((member.member_id, instance_id, ErrorCode.NONE))
        if gone:
            self.drop(gone)
        return results

    def leave(self, now: int, member_id: str, instance_id: str | None) -> ErrorCode:
        return self.leave_members(now, [(member_id, instance_id)])[0][2]

    # -- helpers -------------------------------------------------------------------------

    def classic_assignment(self, member: Member, partitions, protocol: str | None = None) -> bytes:
        """``partitions`` (topic id -> partitions) as a consumer embedded
        protocol assignment, in the version of the member's subscription for
        ``protocol`` (default: the first it offered); topics no longer known
        are left out."""
        names = {tid: name for name, (tid, _) in self.subscription.items()}
        by_name = {names[tid]: sorted(parts) for tid, parts in partitions.items() if tid in names and parts}
        classic = member.classic
        metadata = classic.metadata(protocol) if protocol is not None else classic.protocols[0][1]
        return encode_assignment(by_name, metadata_version(metadata))

    def _classic_member(self, member_id: str, instance_id: str | None) -> Member | ErrorCode:
        if instance_id is None:
            member = self.members.get(member_id)
            if member is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
        else:
            member = self.members.get(self.statics.get(instance_id, ""))
            if member is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if member.member_id != member_id:
                return ErrorCode.FENCED_INSTANCE_ID
        if member.classic is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return member

    @staticmethod
    def _expect_join(member: Member, now: int) -> None:
        if member.join_deadline == NO_DEADLINE:
            member.join_deadline = now + member.rebalance_timeout_ms

    def _waiting_on_unreleased(self, member: Member) -> bool:
        """Whether a partition of the member's target is still held by another member."""
        for tid, parts in self.target.get(member.member_id, {}).items():
            have = member.assigned.get(tid, frozenset())
            if any(p not in have and (tid, p) in self.owners for p in parts):
                return True
        return False
