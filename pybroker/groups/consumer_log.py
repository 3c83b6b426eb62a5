"""KIP-848 consumer groups kept in __consumer_offsets, as Kafka 4 keeps them.

A consumer group is written as Kafka's group coordinator writes it
(``consumer_records.py``): one record for the group epoch, one for the
subscribed topics' metadata, one for the target assignment epoch, and per
member its metadata (subscription, client, classic protocol details), its
target assignment and its current assignment (epochs, state, partitions).

Writing. After every operation that may have changed a consumer group the
coordinator calls ``write``. It compares the group with what it last wrote
for it (only the members the group marked ``touched``, every member's
target when the group was ``retargeted``, and the three group-wide
records) and appends what differs as one batch, so a change is in the log
whole or not at all: tombstones first for members that went (current
assignment, target, metadata), then new values in Kafka's order (member
metadata, partition metadata, group epoch, targets, target epoch, current
assignments). Nothing changed, nothing written. The request that made a
change is answered once its batch is committed (``writes.py``). What was
appended counts as written at once (the next change is a diff against
it); if the batch then fails, the records it carried count as unknown
and the whole group as changed, so that the next write states them again. ``forget`` writes the
tombstones of a whole group (deleted, expired, or converted to a classic
group); ``tombstones`` gives them for the caller's own batch.

Reading. ``OffsetStore.load`` collects the latest value of every consumer
group key (tombstones remove); ``restore`` rebuilds each group that has a
group epoch: members with their ids, epochs, states and assignments,
targets, epochs and subscribed topics, each member given a full session
(and a member still revoking its full rebalance timeout) from the moment
of loading, as Kafka does. What was read counts as written; every member
is marked touched so the first write after the restart mends anything the
records disagreed on (a partition claimed twice is given to its first
claimant only).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING
from uuid import UUID

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import EncodeError
from pybroker.protocol.records import NewRecord

from .consumer import ConsumerGroup, ConsumerGroupConfig
from .consumer_member import MEMBER_STABLE, UNRELEASED_PARTITIONS, UNREVOKED_PARTITIONS, ClassicMember, Member
from .consumer_records import (
    ASSIGNMENT_EPOCH,
    CURRENT_ASSIGNMENT,
    GROUP_EPOCH,
    MEMBER_METADATA,
    PARTITION_METADATA,
    STATE_STABLE,
    STATE_UNRELEASED,
    STATE_UNREVOKED,
    TARGET_ASSIGNMENT,
    ClassicMemberMetadata,
    CurrentAssignmentValue,
    EpochValue,
    MemberMetadataValue,
    PartitionMetadataValue,
    TargetAssignmentValue,
    TopicMetadata,
    Value,
    encode_value,
)
from .records import ConsumerGroupKey, encode_consumer_key
from .writes import Completion

if TYPE_CHECKING:
    from .offsets import OffsetStore

log = logging.getLogger("pybroker.groups")

Records = dict[ConsumerGroupKey, Value]

# What a failed batch said: the log may or may not have it, so it differs
# from every value (and a member that is gone gets its tombstone again).
UNKNOWN = object()

STATES = {MEMBER_STABLE: STATE_STABLE, UNREVOKED_PARTITIONS: STATE_UNREVOKED, UNRELEASED_PARTITIONS: STATE_UNRELEASED}
STATE_NAMES = {v: k for k, v in STATES.items()}
# Kafka's order within a batch: what goes first, then what comes.
TOMBSTONE_ORDER = {CURRENT_ASSIGNMENT: 0, TARGET_ASSIGNMENT: 1, ASSIGNMENT_EPOCH: 2, MEMBER_METADATA: 3, PARTITION_METADATA: 4, GROUP_EPOCH: 5}
VALUE_ORDER = {MEMBER_METADATA: 0, PARTITION_METADATA: 1, GROUP_EPOCH: 2, TARGET_ASSIGNMENT: 3, ASSIGNMENT_EPOCH: 4, CURRENT_ASSIGNMENT: 5}


class ConsumerGroupLog:
    def __init__(self, offsets: OffsetStore):
        self.offsets = offsets
        self.written: dict[str, Records] = {}

    def write(self, group: ConsumerGroup, now: int, leading: list[NewRecord] | None = None) -> Completion:
        """Append what changed in ``group`` since it was last written, after
        ``leading`` records of the caller's (all one batch); the
        completion's result is the storage error code once committed (at
        once for an append that failed; NONE when nothing needed writing)."""
        gid = group.group_id
        written = self.written.setdefault(gid, {})
        changes = changes_since(group, written)
        records = list(leading or [])
        try:
            records += _records(changes)
        except EncodeError as exc:
            log.error("cannot encode consumer group %r: %s", gid, exc)
            return _done(ErrorCode.UNKNOWN_SERVER_ERROR)
        if not records:
            return _done(ErrorCode.NONE)

        def committed(error: ErrorCode, appended) -> None:
            if error == ErrorCode.NONE or appended is None:
                return
            log.warning("consumer group %r not written: %s", gid, error.name)
            now_written = self.written.get(gid)
            if now_written is None:
                return
            for key, value in changes.items():
                if (value is None and key not in now_written) or (value is not None and now_written.get(key) is value):
                    now_written[key] = UNKNOWN
            group.retargeted = True

        done = self.offsets.writer.write(gid, records, now, committed)
        if done.done and done.result != ErrorCode.NONE:
            log.warning("consumer group %r not written: %s", gid, done.result.name)
            return done
        for key, value in changes.items():
            if value is None:
                written.pop(key, None)
            else:
                written[key] = value
        group.touched.clear()
        group.retargeted = False
        return done

    def tombstones(self, group_id: str) -> list[NewRecord]:
        """Tombstones for every record written for the group, in Kafka's order."""
        return _records(dict.fromkeys(self.written.get(group_id, {})))

    def forget(self, group_id: str, now: int, records: list[NewRecord] | None = None) -> Completion:
        """Write the group's tombstones (after ``records`` of the caller's,
        one batch) and forget it, once appended."""
        batch = self.tombstones(group_id) + list(records or [])
        if not batch:
            return _done(ErrorCode.NONE)

        def committed(error: ErrorCode, appended) -> None:
            if error != ErrorCode.NONE:
                log.warning("tombstones of consumer group %r not written: %s", group_id, error.name)

        done = self.offsets.writer.write(group_id, batch, now, committed)
        if not (done.done and done.result != ErrorCode.NONE):
            self.written.pop(group_id, None)
        return done

    def restore(self, group_id: str, records: Records, now: int, config: ConsumerGroupConfig) -> ConsumerGroup | None:
        """The group as ``records`` (read at start) describe it, or None
        without a group epoch."""
        epoch = records.get(ConsumerGroupKey(GROUP_EPOCH, group_id))
        if epoch is None:
            return None
        group = ConsumerGroup(group_id, config)
        group.group_epoch = epoch.epoch
        target_epoch = records.get(ConsumerGroupKey(ASSIGNMENT_EPOCH, group_id))
        group.assignment_epoch = target_epoch.epoch if target_epoch is not None else 0
        topics = records.get(ConsumerGroupKey(PARTITION_METADATA, group_id))
        if topics is not None:
            group.subscription = {t.name: (t.topic_id, t.partitions) for t in topics.topics}
        for key, meta in records.items():
            if key.kind != MEMBER_METADATA:
                continue
            current = records.get(ConsumerGroupKey(CURRENT_ASSIGNMENT, group_id, key.member_id))
            target = records.get(ConsumerGroupKey(TARGET_ASSIGNMENT, group_id, key.member_id))
            member = _member(key.member_id, meta, current, now, config)
            member.assigned = _unclaimed(group, member.member_id, member.assigned)
            member.pending_revocation = _unclaimed(group, member.member_id, member.pending_revocation)
            group.restore(member, _assignment(target.partitions) if target is not None else {})
        self.written[group_id] = dict(records)
        group.touched = {k.member_id for k in records if k.member_id is not None}
        group.retargeted = True
        return group


# -- a group as records ----------------------------------------------------------------


def changes_since(group: ConsumerGroup, old: Records) -> dict[ConsumerGroupKey, Value | None]:
    """The records that describe ``group`` differently from ``old`` (None:
    the record must go), looking only at what the group marked as changed
    (everything when ``old`` is empty)."""
    gid = group.group_id
    current: dict[ConsumerGroupKey, Value | None] = {
        ConsumerGroupKey(GROUP_EPOCH, gid): EpochValue(group.group_epoch),
        ConsumerGroupKey(ASSIGNMENT_EPOCH, gid): EpochValue(group.assignment_epoch),
        ConsumerGroupKey(PARTITION_METADATA, gid): PartitionMetadataValue(
            tuple(TopicMetadata(tid, name, count) for name, (tid, count) in sorted(group.subscription.items()))
        ),
    }
    everyone = not old or group.retargeted
    ids = set(group.members) | {k.member_id for k in old if k.member_id is not None} if everyone else group.touched
    for mid in ids:
        member = group.members.get(mid)
        keys = [ConsumerGroupKey(kind, gid, mid) for kind in (MEMBER_METADATA, TARGET_ASSIGNMENT, CURRENT_ASSIGNMENT)]
        if member is None:
            current.update(dict.fromkeys(keys))
            continue
        current[keys[0]] = _metadata_value(member)
        current[keys[1]] = TargetAssignmentValue(_partitions(group.target.get(mid, {})))
        current[keys[2]] = CurrentAssignmentValue(
            member.epoch, member.previous_epoch, STATES[member.state],
            _partitions(member.assigned), _partitions(member.pending_revocation),
        )
    return {k: v for k, v in current.items() if old.get(k) != v and (v is not None or k in old)}


def _metadata_value(m: Member) -> MemberMetadataValue:
    classic = None if m.classic is None else ClassicMemberMetadata(m.classic.session_timeout_ms, m.classic.protocols)
    return MemberMetadataValue(
        m.instance_id, m.rack_id, m.client_id, m.client_host, tuple(sorted(m.topic_names)), m.topic_regex,
        m.rebalance_timeout_ms, m.server_assignor, classic,
    )


def _records(changes: Mapping[ConsumerGroupKey, Value | None]) -> list[NewRecord]:
    """Tombstones first, then values, each in Kafka's order."""
    gone = sorted((k for k, v in changes.items() if v is None), key=lambda k: (TOMBSTONE_ORDER[k.kind], k.member_id or ""))
    values = sorted(
        (k for k, v in changes.items() if v is not None), key=lambda k: (VALUE_ORDER[k.kind], k.member_id or "")
    )
    return [NewRecord(encode_consumer_key(k), None) for k in gone] + [
        NewRecord(encode_consumer_key(k), encode_value(changes[k])) for k in values
    ]


def _member(member_id: str, meta: MemberMetadataValue, current: CurrentAssignmentValue | None, now: int, config) -> Member:
    classic = None if meta.classic is None else ClassicMember(meta.classic.session_timeout_ms, meta.classic.protocols)
    member = Member(
        member_id,
        instance_id=meta.instance_id,
        rack_id=meta.rack_id,
        rebalance_timeout_ms=meta.rebalance_timeout_ms,
        client_id=meta.client_id,
        client_host=meta.client_host,
        topic_names=frozenset(meta.topic_names),
        topic_regex=meta.topic_regex,
        server_assignor=meta.server_assignor,
        classic=classic,
    )
    if current is not None:
        member.epoch, member.previous_epoch = current.epoch, current.previous_epoch
        member.state = STATE_NAMES.get(current.state, MEMBER_STABLE)
        member.assigned = _assignment(current.assigned)
        member.pending_revocation = _assignment(current.pending_revocation)
    session = classic.session_timeout_ms if classic is not None else config.session_timeout_ms
    member.session_deadline = now + session
    if member.state == UNREVOKED_PARTITIONS:
        member.rebalance_deadline = now + member.rebalance_timeout_ms
        member.rebalance_epoch = member.epoch
    return member


def _partitions(assignment: Mapping[UUID, frozenset[int]]) -> tuple:
    return tuple((tid, tuple(sorted(parts))) for tid, parts in sorted(assignment.items()) if parts)


def _assignment(partitions) -> dict[UUID, frozenset[int]]:
    out: dict[UUID, frozenset[int]] = {}
    for tid, parts in partitions:
        if parts:
            out[tid] = out.get(tid, frozenset()) | frozenset(parts)
    return out


def _unclaimed(group: ConsumerGroup, member_id: str, assignment: dict[UUID, frozenset[int]]) -> dict:
    """``assignment`` without partitions another member already holds."""
    kept = {}
    for tid, parts in assignment.items():
        free = frozenset(p for p in parts if group.owners.get((tid, p), member_id) == member_id)
        if free != parts:
            log.warning("consumer group %r: partitions of %s claimed twice; %s keeps none of %s",
                        group.group_id, tid, member_id, sorted(parts - free))
        if free:
            kept[tid] = free
    return kept


def _done(error: ErrorCode) -> Completion:
    done = Completion()
    done(error)
    return done
