"""One member of a classic consumer group, as a blocking state machine
driven by the consume loop.

``join`` runs JoinGroup (again with the member id the coordinator hands
out, v4+) and SyncGroup; the member the coordinator makes leader assigns
every partition of the subscribed topics with the "range" strategy
(consecutive partitions of each topic split over the members in member id
order, as Kafka's RangeAssignor). ``heartbeat`` is called from the fetch
loop; it says when the group rebalances and ``join`` must run again.
``close`` commits and leaves. Subscriptions are ConsumerProtocol v0
(topics, no user data); assignments are read in any version.
"""

from __future__ import annotations

import time

from pybroker.groups.embedded import decode_assignment, decode_subscription, encode_assignment
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.heartbeat_request import HeartbeatRequest
from pybroker.protocol.messages.join_group_request import JoinGroupRequest, JoinGroupRequestProtocol
from pybroker.protocol.messages.leave_group_request import LeaveGroupRequest, MemberIdentity
from pybroker.protocol.messages.sync_group_request import SyncGroupRequest, SyncGroupRequestAssignment
from pybroker.protocol.primitives import INT16, INT32, Writer, write_string

from . import group_offsets
from .client import AdminError, Client, check

PROTOCOL_TYPE = "consumer"
STRATEGY = "range"
SESSION_TIMEOUT_MS = 30_000
HEARTBEAT_INTERVAL_S = 3.0
REJOIN = {ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION, ErrorCode.UNKNOWN_MEMBER_ID,
          ErrorCode.FENCED_INSTANCE_ID}


def encode_subscription(topics: list[str]) -> bytes:
    w = Writer()
    w.buf += INT16.pack(0) + INT32.pack(len(topics))
    for topic in topics:
        write_string(w, topic)
    w.buf += INT32.pack(-1)  # no user data
    return w.getvalue()


def range_assignment(subscriptions: dict[str, list[str]], partition_counts: dict[str, int]) -> dict[str, dict]:
    """member -> {topic: [partitions]}, Kafka's RangeAssignor."""
    assignment: dict[str, dict[str, list[int]]] = {m: {} for m in subscriptions}
    for topic, count in sorted(partition_counts.items()):
        members = sorted(m for m, topics in subscriptions.items() if topic in topics)
        if not members:
            continue
        share, extra = divmod(count, len(members))
        start = 0
        for i, member in enumerate(members):
            n = share + (1 if i < extra else 0)
            assignment[member][topic] = list(range(start, start + n))
            start += n
    return assignment


class GroupMember:
    def __init__(self, client: Client, group: str, topics: list[str]):
        self.client = client
        self.group = group
        self.topics = topics
        self.member_id = ""
        self.generation = -1
        self.assigned: list[tuple[str, int]] = []
        self._last_heartbeat = 0.0

    def join(self) -> list[tuple[str, int]]:
        """Join (or rejoin) and return the partitions assigned to us."""
        deadline = time.monotonic() + self.client.timeout * 2
        while True:
            conn = self.client.coordinator(self.group)
            body = JoinGroupRequest(
                group_id=self.group,
                session_timeout_ms=SESSION_TIMEOUT_MS,
                rebalance_timeout_ms=int(self.client.timeout * 1000),
                member_id=self.member_id,
                protocol_type=PROTOCOL_TYPE,
                protocols=[JoinGroupRequestProtocol(name=STRATEGY, metadata=encode_subscription(self.topics))],
            )
            joined, _ = conn.call(body, 1, 9)
            if joined.error_code == ErrorCode.MEMBER_ID_REQUIRED:
                self.member_id = joined.member_id
                continue
            if joined.error_code == ErrorCode.UNKNOWN_MEMBER_ID:
                self.member_id = ""
            if joined.error_code and time.monotonic() < deadline and ErrorCode.for_code(joined.error_code) in (
                ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE,
                ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, ErrorCode.REBALANCE_IN_PROGRESS,
            ):
                continue
            check(joined.error_code, subject=f"group {self.group}")
            self.member_id, self.generation = joined.member_id, joined.generation_id
            assignments = []
            if joined.leader == joined.member_id:
                assignments = self._assign(joined.members)
            sync = SyncGroupRequest(group_id=self.group, generation_id=self.generation, member_id=self.member_id,
                                    assignments=assignments)
            version = conn.version(sync.API_KEY, 0, 5)
            if version >= 5:
                sync.protocol_type, sync.protocol_name = PROTOCOL_TYPE, STRATEGY
            synced, _ = conn.call(sync, version, version)
            if synced.error_code in REJOIN and time.monotonic() < deadline:
                continue
            check(synced.error_code, subject=f"group {self.group}")
            partitions = decode_assignment(synced.assignment)[0] if synced.assignment else {}
            self.assigned = sorted((t, p) for t, ps in partitions.items() for p in ps)
            self._last_heartbeat = time.monotonic()
            return self.assigned

    def _assign(self, members) -> list[SyncGroupRequestAssignment]:
        subscriptions = {m.member_id: list(decode_subscription(m.metadata).topics) for m in members}
        wanted = sorted({t for topics in subscriptions.values() for t in topics})
        counts = {t.name: len(t.partitions) for t in self.client.metadata(wanted).topics if not t.error_code}
        plan = range_assignment(subscriptions, counts)
        return [SyncGroupRequestAssignment(member_id=m, assignment=encode_assignment(plan[m], 0)) for m in plan]

    def heartbeat(self) -> bool:
        """Heartbeat when one is due; True when the group rebalances."""
        if time.monotonic() - self._last_heartbeat < HEARTBEAT_INTERVAL_S:
            return False
        self._last_heartbeat = time.monotonic()
        body = HeartbeatRequest(group_id=self.group, generation_id=self.generation, member_id=self.member_id)
        response, _ = self.client.coordinator(self.group).call(body, 0, 4)
        if response.error_code in REJOIN:
            if response.error_code == ErrorCode.UNKNOWN_MEMBER_ID:
                self.member_id = ""
            return True
        check(response.error_code, subject=f"group {self.group}")
        return False

    def committed(self) -> dict[tuple[str, int], int]:
        return group_offsets.fetch_committed(self.client.coordinator(self.group), self.group, self.assigned)

    def commit(self, positions: dict[tuple[str, int], int]) -> None:
        mine = {tp: o for tp, o in positions.items() if tp in set(self.assigned)}
        if mine:
            group_offsets.commit(self.client.coordinator(self.group), self.group, mine, self.generation, self.member_id)

    def leave(self) -> None:
        if not self.member_id:
            return
        conn = self.client.coordinator(self.group)
        try:
            version = conn.version(LeaveGroupRequest.API_KEY, 0, 5)
            if version < 3:
                body = LeaveGroupRequest(group_id=self.group, member_id=self.member_id)
            else:
                member = MemberIdentity(member_id=self.member_id)
                if version >= 5:
                    member.reason = "pybroker consume exits"
                body = LeaveGroupRequest(group_id=self.group, members=[member])
            response, _ = conn.call(body, version, version)
            check(response.error_code, subject=f"group {self.group}")
        except AdminError:
            pass  # the session timeout removes us anyway
        self.member_id = ""
