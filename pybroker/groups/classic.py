"""The classic consumer-group protocol as a pure state machine.

Theory of operation. A group moves through Empty -> PreparingRebalance ->
CompletingRebalance -> Stable (and Dead once deleted). A rebalance starts
when membership or subscriptions change: every member must send JoinGroup
again; the join phase ends when all known members have rejoined (and no
member is still pending behind MEMBER_ID_REQUIRED) or when the rebalance
timeout runs out, at which point members that did not rejoin are dropped,
the generation goes up, a protocol is chosen by vote and a leader is picked.
The leader alone receives every member's subscription; it computes the
assignment and sends it in its SyncGroup; followers' SyncGroups wait for
that and then each gets its share, and the group is Stable. Heartbeats keep
members alive and tell them when a new rebalance has begun.

Nothing here does I/O or reads a clock. Every operation takes ``now`` (ms);
requests that must wait (a JoinGroup until the join phase ends, a follower's
SyncGroup until the leader's) leave a callback that is called with the
result later, from another operation or from ``tick(now)``, which the
coordinator calls when ``next_deadline()`` comes.

Writing the group to __consumer_offsets is asked of the ``persist``
callable: ``persist(group, assignment, stored)`` appends the group's
metadata (with ``assignment``, member id -> bytes, in place of the
members' current assignments when given) and calls ``stored(error, now)``
once the record is committed or has failed (maybe before ``persist``
returns). Meanwhile the group may have moved on — a member left, the
generation changed — so ``stored`` acts only if the group is still where
it was when it asked, as Kafka's storeGroup callbacks do: the leader's
assignment takes effect, and the group becomes Stable, only once it is
committed; a failed write answers the members waiting in SyncGroup with
the error and starts a rebalance.

The rules (error codes and their order per state) follow Apache Kafka's
classic GroupCoordinator.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pybroker.protocol.error_codes import ErrorCode

log = logging.getLogger("pybroker.groups")

EMPTY = "Empty"
PREPARING = "PreparingRebalance"
COMPLETING = "CompletingRebalance"
STABLE = "Stable"
DEAD = "Dead"
NEW_MEMBER_JOIN_TIMEOUT_MS = 5 * 60 * 1000
NO_DEADLINE = float("inf")


Stored = Callable[[ErrorCode, int], None]


class Persist(Protocol):
    def __call__(self, group: ClassicGroup, assignment: dict[str, bytes] | None, stored: Stored) -> None: ...


@dataclass
class GroupConfig:
    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1800000
    initial_rebalance_delay_ms: int = 3000
    max_size: int = 2**31 - 1


@dataclass
class JoinResult:
    error: ErrorCode
    member_id: str = ""
    generation: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    members: list[tuple[str, str | None, bytes]] = field(default_factory=list)
    skip_assignment: bool = False


@dataclass
class SyncResult:
    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass
class Member:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    session_timeout: int
    rebalance_timeout: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    join_cb: Callable[[JoinResult], None] | None = None
    sync_cb: Callable[[SyncResult], None] | None = None
    is_new: bool = False
    deadline: float = NO_DEADLINE

    def metadata(self, protocol: str) -> bytes:
        for name, data in self.protocols:
            if name == protocol:
                return data
        return b""

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        return [(n, bytes(m)) for n, m in protocols] == [(n, bytes(m)) for n, m in self.protocols]

    def vote(self, candidates: set[str]) -> str:
        return next(name for name, _ in self.protocols if name in candidates)


def _ignore(error: ErrorCode, now: int) -> None:
    """The write of an empty group's new generation: nobody waits for it
    (the coordinator logs a failure)."""


class ClassicGroup:
    def __init__(self, group_id: str, now: int, config: GroupConfig, persist: Persist):
        self.group_id = group_id
        self.config = config
        self.persist = persist
        self.state = EMPTY
        self.state_timestamp = now
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.pending: dict[str, float] = {}  # member ids handed out with MEMBER_ID_REQUIRED -> expiry
        self.statics: dict[str, str] = {}  # group.instance.id -> member id
        self.pending_sync: set[str] = set()
        self.storing: int | None = None  # the generation whose assignment is being written
        self.join_deadline = NO_DEADLINE
        self.join_initial = False
        self.join_remaining = 0
        self.new_member_added = False
        self.sync_deadline = NO_DEADLINE

    # -- small queries -----------------------------------------------------------

    def is_empty(self) -> bool:
        return not self.members

    @property
    def rebalance_timeout(self) -> int:
        return max((m.rebalance_timeout for m in self.members.values()), default=0)

    def _transition(self, state: str, now: int) -> None:
        self.state = state
        self.state_timestamp = now

    def _all_joined(self) -> bool:
        return not self.pending and all(m.join_cb is not None for m in self.members.values())

    def _supports(self, protocol_type: str, protocols: list[tuple[str, bytes]]) -> bool:
        if self.state == EMPTY or not self.members:
            return bool(protocol_type) and bool(protocols)
        if protocol_type != self.protocol_type or not protocols:
            return False
        counts = Counter(name for m in self.members.values() for name, _ in m.protocols)
        return any(counts[name] == len(self.members) for name, _ in protocols)

    def candidates(self) -> set[str]:
        sets = [{name for name, _ in m.protocols} for m in self.members.values()]
        return set.intersection(*sets) if sets else set()

    def select_protocol(self) -> str:
        cands = self.candidates()
        votes = Counter(m.vote(cands) for m in self.members.values())
        # Ties go to the protocol that comes first in the first member's list.
        best = max(votes.values())
        first = next(iter(self.members.values()))
        return next(name for name, _ in first.protocols if votes.get(name) == best)

    def next_deadline(self) -> float:
        deadlines = [self.join_deadline, self.sync_deadline, *self.pending.values()]
        deadlines += [m.deadline for m in self.members.values()]
        return min(deadlines, default=NO_DEADLINE)

    def _validate_member(self, member_id: str, instance_id: str | None) -> ErrorCode | None:
        if instance_id is not None:
            known = self.statics.get(instance_id)
            if known is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if known != member_id:
                return ErrorCode.FENCED_INSTANCE_ID
        if member_id not in self.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return None

    def _touch(self, member: Member, now: int) -> None:
        member.deadline = now + member.session_timeout

    # -- JoinGroup ---------------------------------------------------------------

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
        supports_skip_assignment: bool,
        callback: Callable[[JoinResult], None],
    ) -> JoinResult | None:
        """The JoinGroup result, or None when ``callback`` gets it (possibly
        before this returns, if this join completes the phase)."""
        cfg = self.config
        if not cfg.min_session_timeout_ms <= session_timeout <= cfg.max_session_timeout_ms:
            return JoinResult(ErrorCode.INVALID_SESSION_TIMEOUT, member_id)
        if not self._accepts(member_id):
            if member_id in self.members:
                self._remove(member_id, now)
            return JoinResult(ErrorCode.GROUP_MAX_SIZE_REACHED, "")
        if self.state == DEAD:
            return JoinResult(ErrorCode.COORDINATOR_NOT_AVAILABLE, member_id)
        if not self._supports(protocol_type, protocols):
            return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id)
        details = dict(
            client_id=client_id,
            client_host=client_host,
            session_timeout=session_timeout,
            rebalance_timeout=rebalance_timeout,
            protocol_type=protocol_type,
            protocols=[(n, bytes(m)) for n, m in protocols],
        )
        if not member_id:
            new_id = f"{instance_id or client_id}-{uuid.uuid4()}"
            if instance_id is not None:
                return self._join_static(now, new_id, instance_id, details, supports_skip_assignment, callback)
            if require_known_member_id:
                self.pending[new_id] = now + session_timeout
                return JoinResult(ErrorCode.MEMBER_ID_REQUIRED, new_id)
            self._add_and_rebalance(now, new_id, None, details, callback)
            return self._maybe_finish_join(now, new_id)
        if member_id in self.pending:
            del self.pending[member_id]
            self._add_and_rebalance(now, member_id, instance_id, details, callback)
            return self._maybe_finish_join(now, member_id)
        error = self._validate_member(member_id, instance_id)
        if error is not None:
            return JoinResult(error, member_id)
        member = self.members[member_id]
        if self.state == PREPARING:
            self._update(member, details, callback)
        elif self.state == COMPLETING:
            if member.matches(protocols):
                return self._current_join(member_id)
            self._update(member, details, callback)
            self._prepare_rebalance(now)
        elif self.state == STABLE:
            if member_id == self.leader_id or not member.matches(protocols):
                self._update(member, details, callback)
                self._prepare_rebalance(now)
            else:
                self._touch(member, now)
                return self._current_join(member_id)
        else:
            return JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id)
        return self._maybe_finish_join(now, member_id)

    def _accepts(self, member_id: str) -> bool:
        limit = self.config.max_size
        if self.state in (EMPTY, DEAD):
            return True
        if self.state == PREPARING:
            m = self.members.get(member_id)
            waiting = sum(1 for x in self.members.values() if x.join_cb is not None)
            return (m is not None and m.join_cb is not None) or waiting < limit
        return member_id in self.members or len(self.members) < limit

    def _update(self, member: Member, details: dict, callback) -> None:
        member.session_timeout = details["session_timeout"]
        member.rebalance_timeout = details["rebalance_timeout"]
        member.protocol_type = details["protocol_type"]
        member.protocols = details["protocols"]
        member.join_cb = callback

    def _current_join(self, member_id: str) -> JoinResult:
        is_leader = member_id == self.leader_id
        return JoinResult(
            ErrorCode.NONE,
            member_id,
            self.generation,
            self.protocol_type,
            self.protocol_name,
            self.leader_id or "",
            self._member_list() if is_leader else [],
        )

    def _member_list(self) -> list[tuple[str, str | None, bytes]]:
        return [(m.member_id, m.instance_id, m.metadata(self.protocol_name)) for m in self.members.values()]

    def _add_and_rebalance(self, now: int, member_id: str, instance_id: str | None, details: dict, callback) -> None:
        member = Member(member_id, instance_id, **details)
        member.join_cb = callback
        member.is_new = True
        if self.state == PREPARING and self.generation == 0:
            self.new_member_added = True
        if not self.members:
            self.protocol_type = member.protocol_type
        self.members[member_id] = member
        if instance_id is not None:
            self.statics[instance_id] = member_id
        if self.leader_id is None:
            self.leader_id = member_id
        member.deadline = now + NEW_MEMBER_JOIN_TIMEOUT_MS
        if self.state in (EMPTY, STABLE, COMPLETING):
            self._prepare_rebalance(now)

    def _join_static(self, now, new_id, instance_id, details, supports_skip, callback) -> JoinResult | None:
        old_id = self.statics.get(instance_id)
        if old_id is None:
            self._add_and_rebalance(now, new_id, instance_id, details, callback)
            return self._maybe_finish_join(now, new_id)
        member = self.members[old_id]
        old_leader = self.leader_id
        old_protocols = member.protocols
        if member.join_cb is not None:
            member.join_cb(JoinResult(ErrorCode.FENCED_INSTANCE_ID, old_id))
        if member.sync_cb is not None:
            member.sync_cb(SyncResult(ErrorCode.FENCED_INSTANCE_ID))
            member.sync_cb = None
        self._rekey(old_id, new_id)
        member.join_cb = None
        member.session_timeout = details["session_timeout"]
        member.rebalance_timeout = details["rebalance_timeout"]
        member.protocols = details["protocols"]
        self._touch(member, now)
        if self.state == STABLE:
            if self.select_protocol() == self.protocol_name:
                old_timeouts = (member.session_timeout, member.rebalance_timeout)

                def stored(error: ErrorCode, now: int) -> None:
                    # Kafka answers whatever the group did meanwhile; it
                    # undoes the replacement only if it is still in place.
                    if error:
                        if self.members.get(new_id) is member:
                            self._rekey(new_id, old_id)
                            member.protocols = old_protocols
                            member.session_timeout, member.rebalance_timeout = old_timeouts
                        callback(JoinResult(ErrorCode(error), "", self.generation))
                    elif supports_skip:
                        is_leader = new_id == self.leader_id
                        callback(JoinResult(
                            ErrorCode.NONE, new_id, self.generation, self.protocol_type, self.protocol_name,
                            self.leader_id or "", self._member_list() if is_leader else [], skip_assignment=is_leader,
                        ))
                    else:
                        # Old clients must not run an assignment: show them
                        # the leader as it was before the replacement.
                        callback(JoinResult(
                            ErrorCode.NONE, new_id, self.generation, self.protocol_type, self.protocol_name,
                            old_leader or "",
                        ))

                self.persist(self, None, stored)
                return None
            member.join_cb = callback
            self._prepare_rebalance(now)
        elif self.state == COMPLETING:
            member.join_cb = callback
            self._prepare_rebalance(now)
        else:
            member.join_cb = callback
        return self._maybe_finish_join(now, new_id)

    def _rekey(self, old_id: str, new_id: str) -> None:
        member = self.members.pop(old_id)
        member.member_id = new_id
        self.members[new_id] = member
        if member.instance_id is not None:
            self.statics[member.instance_id] = new_id
        if self.leader_id == old_id:
            self.leader_id = new_id
        if old_id in self.pending_sync:
            self.pending_sync.discard(old_id)
            self.pending_sync.add(new_id)

    def _maybe_finish_join(self, now: int, member_id: str) -> None:
        """Complete the join phase if everyone is in. The member's callback
        may run before this returns; the caller waits for it either way."""
        self._maybe_complete(now)
        return None

    def _prepare_rebalance(self, now: int) -> None:
        if self.state == COMPLETING:
            for m in self.members.values():
                m.assignment = b""
                if m.sync_cb is not None:
                    m.sync_cb(SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
                    m.sync_cb = None
        self.sync_deadline = NO_DEADLINE
        self.pending_sync.clear()
        delay = self.config.initial_rebalance_delay_ms
        if self.state == EMPTY:
            self.join_initial = True
            self.join_remaining = max(self.rebalance_timeout - delay, 0)
            self.join_deadline = now + delay
        else:
            self.join_initial = False
            self.join_deadline = now + self.rebalance_timeout
        if self.state != PREPARING:
            self._transition(PREPARING, now)

    def _complete_join(self, now: int) -> None:
        for member_id in [m.member_id for m in self.members.values() if m.join_cb is None and m.instance_id is None]:
            self._remove(member_id, now, rebalance=False)
        if self.state == DEAD:
            return
        joined = [m for m in self.members.values() if m.join_cb is not None]
        if self.members and not joined:
            self.join_initial = False
            self.join_deadline = now + self.rebalance_timeout
            return
        if self.leader_id not in self.members or self.members[self.leader_id].join_cb is None:
            self.leader_id = joined[0].member_id if joined else None
        self.generation += 1
        self.join_deadline = NO_DEADLINE
        self.join_initial = False
        self.pending_sync.clear()
        if not self.members:
            self.protocol_name = None
            self.leader_id = None
            self._transition(EMPTY, now)
            self.persist(self, {}, _ignore)
            return
        self.protocol_name = self.select_protocol()
        self._transition(COMPLETING, now)
        # Kafka's "Stabilized group" line: the one a person follows a
        # rebalance by.
        log.info("[GroupId %s] rebalanced: generation %d with %d members, protocol %s, leader %s",
                 self.group_id, self.generation, len(self.members), self.protocol_name, self.leader_id)
        members = self._member_list()
        for m in list(self.members.values()):
            cb, m.join_cb = m.join_cb, None
            if cb is not None:
                is_leader = m.member_id == self.leader_id
                cb(
                    JoinResult(
                        ErrorCode.NONE, m.member_id, self.generation, self.protocol_type, self.protocol_name,
                        self.leader_id or "", members if is_leader else [],
                    )
                )
            m.is_new = False
            self._touch(m, now)
            self.pending_sync.add(m.member_id)
        self.sync_deadline = now + self.rebalance_timeout

    # -- SyncGroup -----------------------------------------------------------------

    def sync(
        self,
        now: int,
        *,
        member_id: str,
        instance_id: str | None,
        generation: int,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: dict[str, bytes],
        callback: Callable[[SyncResult], None],
    ) -> SyncResult | None:
        if self.state == DEAD:
            return SyncResult(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        error = self._validate_member(member_id, instance_id)
        if error is not None:
            return SyncResult(error)
        if generation != self.generation:
            return SyncResult(ErrorCode.ILLEGAL_GENERATION)
        if (protocol_type is not None and protocol_type != self.protocol_type) or (
            protocol_name is not None and protocol_name != self.protocol_name
        ):
            return SyncResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        member = self.members[member_id]
        if self.state == EMPTY:
            return SyncResult(ErrorCode.UNKNOWN_MEMBER_ID)
        if self.state == PREPARING:
            return SyncResult(ErrorCode.REBALANCE_IN_PROGRESS)
        self._synced(member_id)
        if self.state == STABLE:
            self._touch(member, now)
            return SyncResult(ErrorCode.NONE, self.protocol_type, self.protocol_name, member.assignment)
        if member.sync_cb is not None:  # a second SyncGroup of the same member: the first is answered
            member.sync_cb(SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
        member.sync_cb = callback
        if member_id == self.leader_id and self.storing != self.generation:
            assignment = {mid: bytes(assignments.get(mid, b"")) for mid in self.members}
            self.storing = self.generation
            self.persist(self, assignment, self._assignment_stored(self.generation, assignment))
        return None

    def _assignment_stored(self, generation: int, assignment: dict[str, bytes]) -> Stored:
        def stored(error: ErrorCode, now: int) -> None:
            if self.storing == generation:
                self.storing = None
            if self.state != COMPLETING or self.generation != generation:
                return  # the group moved on while the write was in flight
            if error:
                for m in self.members.values():
                    m.assignment = b""
                    if m.sync_cb is not None:
                        cb, m.sync_cb = m.sync_cb, None
                        cb(SyncResult(ErrorCode(error)))
                self._prepare_rebalance(now)
                return
            for m in self.members.values():
                m.assignment = assignment.get(m.member_id, b"")
            self._transition(STABLE, now)
            for m in self.members.values():
                if m.sync_cb is not None:
                    cb, m.sync_cb = m.sync_cb, None
                    self._touch(m, now)
                    cb(SyncResult(ErrorCode.NONE, self.protocol_type, self.protocol_name, m.assignment))

        return stored

    def _synced(self, member_id: str) -> None:
        self.pending_sync.discard(member_id)
        if not self.pending_sync:
            self.sync_deadline = NO_DEADLINE

    # -- Heartbeat / LeaveGroup -------------------------------------------------------

    def heartbeat(self, now: int, member_id: str, instance_id: str | None, generation: int) -> ErrorCode:
        if self.state == DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        error = self._validate_member(member_id, instance_id)
        if error is not None:
            return error
        if generation != self.generation:
            return ErrorCode.ILLEGAL_GENERATION
        if self.state == EMPTY:
            return ErrorCode.UNKNOWN_MEMBER_ID
        self._touch(self.members[member_id], now)
        return ErrorCode.REBALANCE_IN_PROGRESS if self.state == PREPARING else ErrorCode.NONE

    def leave(self, now: int, member_id: str, instance_id: str | None) -> ErrorCode:
        if self.state == DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if not member_id:
            known = self.statics.get(instance_id) if instance_id is not None else None
            if known is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            self._remove(known, now)
            return ErrorCode.NONE
        if member_id in self.pending:
            del self.pending[member_id]
            self._maybe_complete(now)
            return ErrorCode.NONE
        error = self._validate_member(member_id, instance_id)
        if error is not None:
            return error
        self._remove(member_id, now)
        return ErrorCode.NONE

    def _remove(self, member_id: str, now: int, rebalance: bool = True) -> None:
        member = self.members.pop(member_id, None)
        if member is None:
            return
        if member.join_cb is not None:
            cb, member.join_cb = member.join_cb, None
            cb(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, ""))
        if member.sync_cb is not None:
            cb, member.sync_cb = member.sync_cb, None
            cb(SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
        if member.instance_id is not None and self.statics.get(member.instance_id) == member_id:
            del self.statics[member.instance_id]
        self.pending_sync.discard(member_id)
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        if not rebalance:
            return
        if self.state in (STABLE, COMPLETING):
            self._prepare_rebalance(now)
            self._maybe_complete(now)
        elif self.state == PREPARING:
            self._maybe_complete(now)

    def _maybe_complete(self, now: int) -> None:
        if self.state == PREPARING and not self.join_initial and self._all_joined():
            self._complete_join(now)

    # -- time ----------------------------------------------------------------------

    def tick(self, now: int) -> None:
        """Fire every deadline that has passed."""
        for member_id, deadline in list(self.pending.items()):
            if deadline <= now:
                del self.pending[member_id]
                self._maybe_complete(now)
        for member in list(self.members.values()):
            if member.deadline > now:
                continue
            if not member.is_new and (member.join_cb is not None or member.sync_cb is not None):
                member.deadline = NO_DEADLINE  # the join or sync timeout decides its fate
                continue
            self._remove(member.member_id, now)
        if self.state == PREPARING and self.join_deadline <= now:
            if self.join_initial and self.new_member_added and self.join_remaining > 0:
                step = min(self.config.initial_rebalance_delay_ms, self.join_remaining)
                self.new_member_added = False
                self.join_remaining = max(self.join_remaining - step, 0)
                self.join_deadline = now + step
            else:
                self.join_initial = False
                self._complete_join(now)
        if self.state in (COMPLETING, STABLE) and self.sync_deadline <= now:
            self.sync_deadline = NO_DEADLINE
            stragglers = list(self.pending_sync)
            self.pending_sync.clear()
            for member_id in stragglers:
                self._remove(member_id, now, rebalance=False)
            if stragglers:
                self._prepare_rebalance(now)
                self._maybe_complete(now)

    # -- conversions between group types ------------------------------------------------

    def rebalance(self, now: int) -> None:
        """Start a rebalance: every member must join again (a group that
        was a consumer group a moment ago)."""
        self._prepare_rebalance(now)

    def release_waiters(self, error: ErrorCode) -> None:
        """Answer every JoinGroup and SyncGroup still waiting with ``error``
        (the group is becoming a consumer group)."""
        for m in self.members.values():
            if m.join_cb is not None:
                cb, m.join_cb = m.join_cb, None
                cb(JoinResult(error, m.member_id))
            if m.sync_cb is not None:
                cb, m.sync_cb = m.sync_cb, None
                cb(SyncResult(error))

    # -- offsets and admin -----------------------------------------------------------

    def validate_offset_commit(self, now: int, member_id: str, instance_id: str | None, generation: int) -> ErrorCode:
        if self.state == DEAD:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if generation < 0 and self.state == EMPTY:
            return ErrorCode.NONE
        if generation >= 0 or member_id or instance_id is not None:
            error = self._validate_member(member_id, instance_id)
            if error is not None:
                return error
            if generation != self.generation:
                return ErrorCode.ILLEGAL_GENERATION
        elif self.state != EMPTY:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if self.state == COMPLETING:
            return ErrorCode.REBALANCE_IN_PROGRESS
        if member_id in self.members and self.state in (STABLE, PREPARING):
            self._touch(self.members[member_id], now)
        return ErrorCode.NONE
