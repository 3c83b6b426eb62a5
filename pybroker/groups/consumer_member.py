"""A member of a KIP-848 consumer group, as the group's state machine
(``consumer.py``) and the classic requests it serves (``consumer_classic.py``)
see it: its epochs, subscription, current assignment and where it is on the
way to its target, its deadlines, and, for a member that uses the classic
protocol, what its JoinGroup said (``ClassicMember``). Also the result of a
ConsumerGroupHeartbeat.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

from pybroker.protocol.error_codes import ErrorCode

from .classic import NO_DEADLINE

# Where a member is on its way to its target (Kafka's MemberState).
MEMBER_STABLE = "stable"
UNREVOKED_PARTITIONS = "unrevoked_partitions"
UNRELEASED_PARTITIONS = "unreleased_partitions"

JOIN_EPOCH = 0
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2

# Version 1 of the request requires the client to choose its member id (KIP-1082).
CLIENT_MEMBER_ID_VERSION = 1

Assignment = dict[UUID, frozenset[int]]
Topics = Mapping[str, tuple[UUID, int]]


@dataclass
class HeartbeatResult:
    error: ErrorCode = ErrorCode.NONE
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: dict[UUID, list[int]] | None = None  # None: unchanged, not sent
    # The write of what the heartbeat changed (the coordinator's): the
    # response waits for it.
    written: object = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ClassicMember:
    """What a member using the classic protocol brings: the session timeout
    and protocols (name, subscription bytes) of its latest JoinGroup."""

    session_timeout_ms: int
    protocols: tuple[tuple[str, bytes], ...]

    @property
    def protocol_name(self) -> str:
        """The protocol Kafka names in the member's JoinGroup and SyncGroup
        answers: the first it offered."""
        return self.protocols[0][0]

    def metadata(self, name: str) -> bytes:
        return next((data for n, data in self.protocols if n == name), b"")


@dataclass
class Member:
    member_id: str
    epoch: int = 0
    previous_epoch: int = -1
    state: str = MEMBER_STABLE
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    client_id: str = ""
    client_host: str = ""
    topic_names: frozenset[str] = frozenset()
    topic_regex: str | None = None
    server_assignor: str | None = None
    assigned: Assignment = field(default_factory=dict)
    pending_revocation: Assignment = field(default_factory=dict)
    session_deadline: float = NO_DEADLINE
    rebalance_deadline: float = NO_DEADLINE  # fenced then if still at rebalance_epoch
    rebalance_epoch: int = -1
    classic: ClassicMember | None = None  # None: the member uses the consumer protocol
    join_deadline: float = NO_DEADLINE  # a classic member told to rejoin is fenced then
    sync_deadline: float = NO_DEADLINE  # a classic member that joined is fenced then if it has not synced

    def reconciled_to(self, epoch: int) -> bool:
        return self.state == MEMBER_STABLE and self.epoch == epoch

    def subscribes(self, topic: str) -> bool:
        return topic in self.topic_names or (
            bool(self.topic_regex) and re.fullmatch(self.topic_regex, topic) is not None
        )


def new_member_id() -> str:
    """A random UUID written as Kafka writes one: URL-safe base64, no padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def error_result(code: ErrorCode, message: str) -> HeartbeatResult:
    return HeartbeatResult(error=code, message=message)
