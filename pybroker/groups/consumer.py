"""The consumer group protocol of KIP-848 as a pure state machine.

Theory of operation. Members talk to the coordinator with one request,
ConsumerGroupHeartbeat, sent every heartbeat interval (which the
coordinator hands out) and whenever something changes on the client. The
coordinator owns three things per group:

* the **group epoch**: bumped whenever what the assignment depends on
  changes: a member joins, leaves or is fenced, a subscription changes, or
  the subscribed topics change in the cluster (created, deleted, more
  partitions; noticed at the next heartbeat);
* the **target assignment** and its **assignment epoch**: when a heartbeat
  finds the group epoch ahead of the assignment epoch, the group's server
  side assignor (``assignors.py``; the one most members ask for, else the
  default) computes every member's target and the assignment epoch catches
  up (until then the group is Assigning);
* each **member's current assignment** and **member epoch**. A member
  moves towards its target one heartbeat at a time (reconciliation; the
  group is Reconciling until all have arrived, then Stable):

  - partitions the member holds but must give up are taken away from its
    assignment first and it stays at its epoch, UNREVOKED_PARTITIONS, until
    a heartbeat's owned partitions no longer list them (or the member's
    rebalance timeout runs out: then it is fenced);
  - a partition in its target that another member still holds (assigned or
    pending revocation) is not given yet: the member moves to the target
    epoch in UNRELEASED_PARTITIONS and gets the partition at a later
    heartbeat, after the previous owner has released it. So no partition
    ever has two owners;
  - otherwise the member takes the target epoch and the new partitions,
    STABLE.

Epochs fence zombies: a heartbeat must carry the member's epoch (or the
previous one together with owned partitions that are a subset of the
current assignment, in case the response carrying the new epoch was lost),
else FENCED_MEMBER_EPOCH; offset commits must carry exactly the current
epoch, else STALE_MEMBER_EPOCH. Epoch 0 joins (the member id is chosen by
the client from v1; the coordinator makes one for v0), -1 leaves, -2 is a
static member leaving for a while: it keeps its partitions (nobody else
gets them) and its instance id until it comes back with a new member id or
its session times out. A member that misses heartbeats for the session
timeout is fenced: removed, and the group epoch bumped.

Subscriptions are topic names and/or a regular expression matched against
whole topic names (Python's ``re``, standing in for Kafka's RE2/J: both
agree on ordinary patterns), resolved on every heartbeat rather than
asynchronously every few seconds as Kafka does. Rack-aware assignment and
per-group dynamic configs are not implemented.

Members using the classic protocol. KIP-848's online migration lets a
consumer group hold members that still speak JoinGroup/SyncGroup/Heartbeat
(``consumer_classic.py`` serves those requests; ``migration.py`` converts
whole groups). Such a member carries its session timeout and protocols
(``ClassicMember``); the coordinator still assigns its partitions and it
reconciles like the others, except that it only hears of a new epoch
through REBALANCE_IN_PROGRESS and must then join again within its
rebalance timeout (and sync within it after joining), else it is fenced.
When the last member using the consumer protocol leaves or is fenced and
every remaining member uses the classic protocol, the group asks its
owner, through ``downgrade``, to turn it back into a classic group
(``group.consumer.migration.policy`` permitting); if the owner does, this
group is finished (``replaced``) and does nothing more.

Nothing here does I/O or reads a clock: operations take ``now`` (ms) and
the cluster's topics as a mapping name -> (topic id, partition count);
``tick(now)`` fires session, rebalance, join and sync timeouts when
``next_deadline()`` has come. Every member that was added, changed or
removed is noted in ``touched`` (and ``_assign`` sets ``retargeted``) so
that the coordinator writes only what changed to __consumer_offsets
(``consumer_log.py``); committed offsets are kept by the offset store.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from uuid import UUID

from pybroker.protocol.error_codes import ErrorCode

from . import MIGRATION_POLICIES
from .assignors import ASSIGNORS, MemberSpec
from .classic import DEAD, EMPTY, NO_DEADLINE, STABLE
from .consumer_classic import ClassicMembers
from .consumer_member import (
    CLIENT_MEMBER_ID_VERSION,
    JOIN_EPOCH,
    LEAVE_EPOCH,
    MEMBER_STABLE,
    STATIC_LEAVE_EPOCH,
    UNRELEASED_PARTITIONS,
    UNREVOKED_PARTITIONS,
    Assignment,
    HeartbeatResult,
    Member,
    Topics,
    new_member_id,
)
from .consumer_member import error_result as _error

ASSIGNING = "Assigning"
RECONCILING = "Reconciling"
# EMPTY, STABLE and DEAD are the classic groups' names too: "Empty", "Stable", "Dead".


@dataclass
class ConsumerGroupConfig:
    session_timeout_ms: int = 45000  # group.consumer.session.timeout.ms
    heartbeat_interval_ms: int = 5000  # group.consumer.heartbeat.interval.ms
    max_size: int = 2**31 - 1  # group.consumer.max.size
    assignors: tuple[str, ...] = ("uniform", "range")  # group.consumer.assignors; the first is the default
    migration_policy: str = "bidirectional"  # group.consumer.migration.policy
    classic_max_size: int = 2**31 - 1  # group.max.size: a downgraded group must fit in a classic one

    @property
    def upgrade_enabled(self) -> bool:
        return MIGRATION_POLICIES[self.migration_policy][0]

    @property
    def downgrade_enabled(self) -> bool:
        return MIGRATION_POLICIES[self.migration_policy][1]


def validate_heartbeat(
    version: int,
    *,
    group_id: str,
    member_id: str,
    member_epoch: int,
    instance_id: str | None,
    rack_id: str | None,
    rebalance_timeout_ms: int,
    subscribed_topic_names: list[str] | None,
    subscribed_topic_regex: str | None,
    server_assignor: str | None,
    owned_partitions: object | None,
    assignors: Iterable[str],
) -> tuple[ErrorCode, str] | None:
    """Kafka's checks of a request before any group is looked at: None if
    fine, else (INVALID_REQUEST or UNSUPPORTED_ASSIGNOR, message)."""
    bad = ErrorCode.INVALID_REQUEST
    if (version >= CLIENT_MEMBER_ID_VERSION or member_epoch > 0 or member_epoch == LEAVE_EPOCH) and _blank(member_id):
        return bad, "MemberId can't be empty."
    if _blank(group_id):
        return bad, "GroupId can't be empty."
    if _blank(instance_id):
        return bad, "InstanceId can't be empty."
    if _blank(rack_id):
        return bad, "RackId can't be empty."
    if member_epoch == JOIN_EPOCH:
        if rebalance_timeout_ms == -1:
            return bad, "RebalanceTimeoutMs must be provided in first request."
        if owned_partitions is None or owned_partitions:
            return bad, "TopicPartitions must be empty when (re-)joining."
        if not subscribed_topic_names and not subscribed_topic_regex:
            return bad, "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."
    elif member_epoch == STATIC_LEAVE_EPOCH:
        if instance_id is None:
            return bad, "InstanceId can't be null."
    elif member_epoch < STATIC_LEAVE_EPOCH:
        return bad, "MemberEpoch is invalid."
    names = list(assignors)
    if server_assignor is not None and server_assignor not in names:
        return (
            ErrorCode.UNSUPPORTED_ASSIGNOR,
            f"ServerAssignor {server_assignor} is not supported. Supported assignors: {', '.join(names)}.",
        )
    return None


def _blank(value: str | None) -> bool:
    return value is not None and not value.strip()


class ConsumerGroup(ClassicMembers):
    group_type = "consumer"
    protocol_type = "consumer"
    protocol_name = None
    # Offsets of a consumer group expire by their commit time, never by how
    # long the group has been empty: the state time is "unknown".
    state_timestamp = -1

    def __init__(self, group_id: str, config: ConsumerGroupConfig | None = None):
        self.group_id = group_id
        self.config = config or ConsumerGroupConfig()
        self.group_epoch = 0
        self.assignment_epoch = 0
        self.members: dict[str, Member] = {}
        self.statics: dict[str, str] = {}  # instance id -> member id
        self.target: dict[str, Assignment] = {}
        self.owners: dict[tuple[UUID, int], str] = {}  # partition -> member holding it (assigned or pending revocation)
        self.subscription: dict[str, tuple[UUID, int]] = {}  # subscribed topics that exist: name -> (id, partitions)
        self.dead = False
        self.touched: set[str] = set()  # member ids added, changed or removed since the owner last looked
        self.retargeted = False  # the target assignment was recomputed since the owner last looked
        # Set by the owner: called with (group, now, leaving member ids,
        # whether to rebalance) when the group may become a classic group;
        # True if it did.
        self.downgrade: Callable[[ConsumerGroup, int, set[str], bool], bool] | None = None
        self.replaced = False

    # -- queries ---------------------------------------------------------------------

    @property
    def state(self) -> str:
        if self.dead:
            return DEAD
        if not self.members:
            return EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ASSIGNING
        if any(not m.reconciled_to(self.assignment_epoch) for m in self.members.values()):
            return RECONCILING
        return STABLE

    @property
    def generation(self) -> int:
        return self.group_epoch

    def is_empty(self) -> bool:
        return not self.members

    def next_deadline(self) -> float:
        return min(
            (min(m.session_deadline, m.rebalance_deadline, m.join_deadline, m.sync_deadline) for m in self.members.values()),
            default=NO_DEADLINE,
        )

    def preferred_assignor(self) -> str:
        """The assignor most members ask for; the default when none does."""
        names = self.config.assignors
        votes: dict[str, int] = {}
        for m in self.members.values():
            if m.server_assignor is not None:
                votes[m.server_assignor] = votes.get(m.server_assignor, 0) + 1
        if not votes:
            return names[0]
        rank = {name: i for i, name in enumerate(names)}
        return min(votes, key=lambda name: (-votes[name], rank.get(name, len(rank)), name))

    def subscribed_topic_names(self) -> set[str]:
        """Topics some member subscribes to, by name or through its regex."""
        names = {n for m in self.members.values() for n in m.topic_names}
        names.update(n for n in self.subscription if any(m.subscribes(n) for m in self.members.values()))
        return names

    # -- ConsumerGroupHeartbeat ------------------------------------------------------

    def consumer_group_heartbeat(
        self,
        now: int,
        *,
        member_id: str,
        member_epoch: int,
        topics: Topics,
        instance_id: str | None = None,
        rack_id: str | None = None,
        rebalance_timeout_ms: int = -1,
        subscribed_topic_names: Iterable[str] | None = None,
        subscribed_topic_regex: str | None = None,
        server_assignor: str | None = None,
        owned_partitions: Mapping[UUID, Iterable[int]] | None = None,
        client_id: str = "",
        client_host: str = "",
    ) -> HeartbeatResult:
        """One heartbeat of a request that passed ``validate_heartbeat``."""
        if member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            return self._leave(now, member_id, instance_id, member_epoch)
        joining = member_epoch == JOIN_EPOCH
        full = self._full_error(member_id)
        if full is not None:
            return full
        if not member_id:
            member_id = new_member_id()
        owned = None if owned_partitions is None else {tid: frozenset(ps) for tid, ps in owned_partitions.items()}
        found = self._find_member(member_id, member_epoch, instance_id, owned, joining)
        if isinstance(found, HeartbeatResult):
            return found
        member, replaced = found

        updated = replace(
            member,
            instance_id=instance_id if instance_id is not None else member.instance_id,
            rack_id=rack_id if rack_id is not None else member.rack_id,
            rebalance_timeout_ms=rebalance_timeout_ms if rebalance_timeout_ms != -1 else member.rebalance_timeout_ms,
            server_assignor=server_assignor if server_assignor is not None else member.server_assignor,
            topic_names=frozenset(subscribed_topic_names) if subscribed_topic_names is not None else member.topic_names,
            topic_regex=(subscribed_topic_regex or None) if subscribed_topic_regex is not None else member.topic_regex,
            client_id=client_id,
            client_host=client_host,
            classic=None,
            join_deadline=NO_DEADLINE,
            sync_deadline=NO_DEADLINE,
        )
        if updated.topic_regex != member.topic_regex and updated.topic_regex:
            try:
                re.compile(updated.topic_regex)
            except re.error as exc:
                return _error(
                    ErrorCode.INVALID_REGULAR_EXPRESSION,
                    f"SubscribedTopicRegex `{updated.topic_regex}` is not a valid regular expression: {exc}.",
                )
        reconciled = self._update(now, member, updated, replaced, owned, topics)
        reconciled.session_deadline = now + self.config.session_timeout_ms

        # A full request (a join, or everything re-sent after an error) gets
        # the assignment; otherwise only a changed assignment is sent.
        full = joining or (rebalance_timeout_ms != -1 and subscribed_topic_names is not None and owned is not None)
        send = full or reconciled.assigned != member.assigned
        return HeartbeatResult(
            member_id=member_id,
            member_epoch=reconciled.epoch,
            heartbeat_interval_ms=self.config.heartbeat_interval_ms,
            assignment={tid: sorted(ps) for tid, ps in reconciled.assigned.items()} if send else None,
        )

    def _update(self, now: int, member: Member, updated: Member, replaced: str | None, owned, topics: Topics) -> Member:
        """Store ``updated`` (the new version of ``member``, taking the place
        of member ``replaced`` if not None), bump the group epoch if what the
        assignment depends on changed, compute a new target assignment if
        the group epoch is ahead, and move the member one step towards its
        target. Returns the member as stored."""
        bump = updated.topic_names != member.topic_names or updated.topic_regex != member.topic_regex
        others = [m for mid, m in self.members.items() if mid not in (updated.member_id, replaced)]
        subscription = resolve_subscription([*others, updated], topics)
        bump = bump or subscription != self.subscription
        if replaced is not None:
            self.target[updated.member_id] = self.target.get(replaced, {})
            self._remove(replaced, keep_target=replaced == updated.member_id)
        self.subscription = subscription
        if bump:
            self.group_epoch += 1
        self._put(updated)
        if self.group_epoch > self.assignment_epoch:
            self._assign()
        reconciled = self._reconcile(updated, owned)
        if reconciled != updated:
            if reconciled.state == UNREVOKED_PARTITIONS:
                reconciled.rebalance_deadline = now + reconciled.rebalance_timeout_ms
                reconciled.rebalance_epoch = reconciled.epoch
            else:
                reconciled.rebalance_deadline, reconciled.rebalance_epoch = NO_DEADLINE, -1
            self._put(reconciled)
        return reconciled

    def restore(self, member: Member, target: Assignment) -> None:
        """Add a member as it already is, with its target (a group converted
        from a classic one, or read back from __consumer_offsets); its
        partitions must not be anyone else's."""
        self.target[member.member_id] = target
        self._put(member)

    def _full_error(self, member_id: str) -> HeartbeatResult | None:
        limit = self.config.max_size
        if len(self.members) >= limit and member_id not in self.members:
            return _error(
                ErrorCode.GROUP_MAX_SIZE_REACHED,
                f"The consumer group has reached its maximum capacity of {limit} members.",
            )
        return None

    def _find_member(self, member_id, epoch, instance_id, owned, joining):
        """(the member as it is, the member id it replaces or None), or an error."""
        if instance_id is None:
            member = self.members.get(member_id)
            if member is None:
                if not joining:
                    return _error(
                        ErrorCode.UNKNOWN_MEMBER_ID, f"Member {member_id} is not a member of group {self.group_id}."
                    )
                return Member(member_id), None
            return self._check_epoch(member, epoch, owned) or (member, None)
        existing = self.members.get(self.statics.get(instance_id, ""))
        if joining:
            if existing is None:
                return self.members.get(member_id) or Member(member_id), None
            # A member using the classic protocol never leaves for a while:
            # a consumer-protocol member with its instance id replaces it.
            if existing.epoch != STATIC_LEAVE_EPOCH and existing.classic is None:
                return _error(
                    ErrorCode.UNRELEASED_INSTANCE_ID,
                    f"Static member {member_id} with instance id {instance_id} cannot join the group because "
                    f"the instance id is owned by {existing.member_id} member.",
                )
            # The instance comes back: a new member takes over its partitions.
            fresh = replace(
                existing,
                member_id=member_id,
                epoch=0,
                previous_epoch=0,
                session_deadline=NO_DEADLINE,
                rebalance_deadline=NO_DEADLINE,
                rebalance_epoch=-1,
            )
            return fresh, existing.member_id
        if existing is None:
            return _error(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
        if existing.member_id != member_id:
            return _error(
                ErrorCode.FENCED_INSTANCE_ID,
                f"Static member {member_id} with instance id {instance_id} was fenced by member {existing.member_id}.",
            )
        return self._check_epoch(existing, epoch, owned) or (existing, None)

    @staticmethod
    def _check_epoch(member: Member, received: int, owned) -> HeartbeatResult | None:
        if received > member.epoch:
            return _error(
                ErrorCode.FENCED_MEMBER_EPOCH,
                f"The consumer group member has a greater member epoch ({received}) than the one known by the "
                f"group coordinator ({member.epoch}). The member must abandon all its partitions and rejoin.",
            )
        # The previous epoch is fine if the response that bumped it may have
        # been lost: the member then owns no partition it should not.
        if received < member.epoch and (received != member.previous_epoch or not _subset(owned, member.assigned)):
            return _error(
                ErrorCode.FENCED_MEMBER_EPOCH,
                f"The consumer group member has a smaller member epoch ({received}) than the one known by the "
                f"group coordinator ({member.epoch}). The member must abandon all its partitions and rejoin.",
            )
        return None

    def _leave(self, now: int, member_id: str, instance_id: str | None, epoch: int) -> HeartbeatResult:
        if instance_id is None:
            if member_id not in self.members:
                return _error(
                    ErrorCode.UNKNOWN_MEMBER_ID, f"Member {member_id} is not a member of group {self.group_id}."
                )
            self.fence(member_id, now)
            return HeartbeatResult(member_id=member_id, member_epoch=epoch)
        member = self.members.get(self.statics.get(instance_id, ""))
        if member is None:
            return _error(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
        if member.member_id != member_id:
            return _error(
                ErrorCode.FENCED_INSTANCE_ID,
                f"Static member {member_id} with instance id {instance_id} was fenced by member {member.member_id}.",
            )
        if epoch == STATIC_LEAVE_EPOCH:
            # Gone for a while: its partitions stay its own (and its session
            # keeps running) until it comes back or times out.
            self._put(replace(member, epoch=STATIC_LEAVE_EPOCH, pending_revocation={}))
            return HeartbeatResult(member_id=member_id, member_epoch=STATIC_LEAVE_EPOCH)
        self.fence(member_id, now)
        return HeartbeatResult(member_id=member_id, member_epoch=epoch)

    # -- membership --------------------------------------------------------------------

    def _put(self, member: Member) -> None:
        """Store ``member``, moving partition ownership from its old version."""
        old = self.members.get(member.member_id)
        if old is not None:
            self._release(old)
        for tid, parts in (*member.assigned.items(), *member.pending_revocation.items()):
            for p in parts:
                holder = self.owners.setdefault((tid, p), member.member_id)
                assert holder == member.member_id, f"{tid}-{p} held by {holder} and {member.member_id}"
        self.members[member.member_id] = member
        self.touched.add(member.member_id)
        if member.instance_id is not None:
            self.statics[member.instance_id] = member.member_id

    def _release(self, member: Member) -> None:
        for tid, parts in (*member.assigned.items(), *member.pending_revocation.items()):
            for p in parts:
                if self.owners.get((tid, p)) == member.member_id:
                    del self.owners[(tid, p)]

    def _remove(self, member_id: str, keep_target: bool = False) -> None:
        member = self.members.pop(member_id)
        self.touched.add(member_id)
        self._release(member)
        if not keep_target:
            self.target.pop(member_id, None)
        if member.instance_id is not None and self.statics.get(member.instance_id) == member_id:
            del self.statics[member.instance_id]

    def fence(self, member_id: str, now: int) -> None:
        """Remove a member (it left, or timed out) and bump the group epoch:
        its partitions are free for the others' next targets. If only
        members using the classic protocol would be left, the group may
        become a classic group instead (Kafka's online downgrade)."""
        if self.may_downgrade({member_id}) and self.downgrade is not None and self.downgrade(self, now, {member_id}, True):
            self.replaced = True
            return
        self.drop([member_id])

    def drop(self, member_ids: Iterable[str]) -> None:
        """Remove members, forget the topics nobody subscribes to any more,
        and bump the group epoch once."""
        for member_id in member_ids:
            self._remove(member_id)
        remaining = list(self.members.values())
        self.subscription = {n: v for n, v in self.subscription.items() if any(m.subscribes(n) for m in remaining)}
        self.group_epoch += 1

    def may_downgrade(self, leaving: set[str]) -> bool:
        """Kafka's conditions for turning the group into a classic group
        when ``leaving`` go: someone stays, everyone who stays uses the
        classic protocol, the policy allows it, and they fit in a classic
        group (group.max.size)."""
        staying = [m for mid, m in self.members.items() if mid not in leaving]
        return (
            bool(staying)
            and all(m.classic is not None for m in staying)
            and self.config.downgrade_enabled
            and len(staying) <= self.config.classic_max_size
        )

    # -- assignment and reconciliation -------------------------------------------------

    def _assign(self) -> None:
        ids = {name: tid for name, (tid, _) in self.subscription.items()}
        specs = [
            MemberSpec(
                m.member_id,
                m.instance_id,
                frozenset(tid for name, tid in ids.items() if m.subscribes(name)),
                self.target.get(m.member_id, {}),
            )
            for m in self.members.values()
        ]
        counts = {tid: n for tid, n in self.subscription.values()}
        self.target = ASSIGNORS[self.preferred_assignor()](specs, counts)
        self.assignment_epoch = self.group_epoch
        self.retargeted = True

    def _reconcile(self, member: Member, owned: dict[UUID, frozenset[int]] | None) -> Member:
        """The member's next step towards its target (Kafka's CurrentAssignmentBuilder)."""
        if member.state == MEMBER_STABLE:
            if member.epoch == self.assignment_epoch:
                return member
            return self._next(member, member.epoch, owned)
        if member.state == UNREVOKED_PARTITIONS:
            if _owns_any(owned, member.pending_revocation):
                return member
            return self._next(member, member.epoch + 1, owned)
        return self._next(member, member.epoch, owned)

    def _next(self, member: Member, epoch: int, owned) -> Member:
        target = self.target.get(member.member_id, {})
        kept: Assignment = {}
        revoke: Assignment = {}
        add: Assignment = {}
        unreleased = False
        for tid in target.keys() | member.assigned.keys():
            want = target.get(tid, frozenset())
            have = member.assigned.get(tid, frozenset())
            keep = have & want
            new = frozenset(p for p in want - keep if (tid, p) not in self.owners)
            unreleased = unreleased or len(new) < len(want - keep)
            for out, parts in ((kept, keep), (revoke, have - keep), (add, new)):
                if parts:
                    out[tid] = parts
        if revoke and _owns_any(owned, revoke):
            return replace(
                member,
                state=UNREVOKED_PARTITIONS,
                epoch=epoch,
                previous_epoch=member.epoch,
                assigned=kept,
                pending_revocation=revoke,
            )
        for tid, parts in add.items():
            kept[tid] = kept.get(tid, frozenset()) | parts
        return replace(
            member,
            state=UNRELEASED_PARTITIONS if unreleased else MEMBER_STABLE,
            epoch=self.assignment_epoch,
            previous_epoch=member.epoch,
            assigned=kept,
            pending_revocation={},
        )

    # -- time --------------------------------------------------------------------------

    def tick(self, now: int) -> None:
        """Fence members whose session expired, who did not revoke in time,
        or (classic members) did not join or sync in time."""
        for member in list(self.members.values()):
            if self.replaced:
                return
            if self.members.get(member.member_id) is not member:
                continue
            if min(member.session_deadline, member.join_deadline, member.sync_deadline) <= now:
                self.fence(member.member_id, now)
            elif member.rebalance_deadline <= now:
                if member.epoch == member.rebalance_epoch:
                    self.fence(member.member_id, now)
                else:
                    member.rebalance_deadline, member.rebalance_epoch = NO_DEADLINE, -1

    # -- offsets -----------------------------------------------------------------------

    def validate_offset_commit(
        self, now: int, member_id: str, instance_id: str | None, generation: int, api_version: int | None = None
    ) -> ErrorCode:
        """Kafka's rules: epoch -1 commits (admin, or a consumer outside the
        group) only to an empty group; otherwise a known member committing
        with exactly its current epoch: at v9+ for a consumer-protocol
        member (STALE_MEMBER_EPOCH), as its generation for a classic member
        (ILLEGAL_GENERATION)."""
        if generation < 0 and not self.members:
            return ErrorCode.NONE
        member = self.members.get(member_id)
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if member.classic is None and api_version is not None and api_version < 9:
            return ErrorCode.UNSUPPORTED_VERSION
        return _epoch_error(member, generation)

    def validate_offset_fetch(self, member_id: str | None, member_epoch: int) -> ErrorCode:
        """OffsetFetch v9+: anonymous fetches (null member id, epoch < 0) are
        fine; a member must fetch with its current epoch."""
        if member_id is None and member_epoch < 0:
            return ErrorCode.NONE
        member = self.members.get(member_id or "")
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return _epoch_error(member, member_epoch)


def _epoch_error(member: Member, received: int) -> ErrorCode:
    if received == member.epoch:
        return ErrorCode.NONE
    return ErrorCode.ILLEGAL_GENERATION if member.classic is not None else ErrorCode.STALE_MEMBER_EPOCH


def resolve_subscription(members: Iterable[Member], topics: Topics) -> dict[str, tuple[UUID, int]]:
    """The existing topics the members subscribe to: name -> (id, partitions)."""
    members = list(members)
    names = {n for m in members for n in m.topic_names}
    found = {n: topics[n] for n in names if n in topics}
    patterns = []
    for regex in {m.topic_regex for m in members if m.topic_regex}:
        try:
            patterns.append(re.compile(regex))
        except re.error:
            continue
    if patterns:
        for name in topics:
            if name not in found and any(p.fullmatch(name) for p in patterns):
                found[name] = topics[name]
    return found


def _subset(owned: dict[UUID, frozenset[int]] | None, assigned: Assignment) -> bool:
    if owned is None:
        return False
    return all(tid in assigned and parts <= assigned[tid] for tid, parts in owned.items())


def _owns_any(owned: dict[UUID, frozenset[int]] | None, partitions: Assignment) -> bool:
    """Whether the member still reports any of ``partitions`` (not knowing counts as yes)."""
    if owned is None:
        return True
    return any(parts & partitions.get(tid, frozenset()) for tid, parts in owned.items())
