"""Committed offsets: an in-memory cache backed by ``__consumer_offsets``.

The cache maps group -> (topic, partition) -> OffsetAndMetadata. A commit
changes it only once the records saying the same thing are committed in
the group's partition of ``__consumer_offsets`` (``writes.py``); until then
its offsets are pending, as Kafka's ``pendingOffsetCommits``: invisible to
OffsetFetch, kept from expiry, and dropped (never applied later) if the
offsets or the group are deleted meanwhile; a failed write applies nothing.
Deletions change the cache together with writing their tombstones, and
like Kafka's never roll back. Every write is one record batch, so a commit
of many partitions, or a group's deletion, is all-or-nothing on disk.

On start ``load`` reads every partition of the topic from its log start to
its high watermark: later records win, tombstones delete, transactional
commits count once their COMMIT marker is read. It returns what it found
of the groups so the coordinator can rebuild them: classic groups'
metadata (``restore_group``) and KIP-848 consumer groups' records
(``consumer_log.py``); a group that has offsets but neither comes back as
an empty simple group, as Kafka loads it. When an id has records of both
kinds (a conversion's batch always tombstones the other kind's), the kind
written last wins.

Retention (``expire``, Kafka's rules) runs on the coordinator's timer:

* a group with a protocol type that is Empty: every offset, once the group
  has been empty for offsets.retention.minutes (measured from the commit
  when the state's time is unknown, i.e. metadata older than value v2);
* a Stable "consumer" group whose subscriptions can be read: the offsets
  of topics no member subscribes to, by commit time;
* a simple group (no protocol type): every offset, by commit time;
* anything else: nothing;
* a KIP-848 consumer group (any state): the offsets of topics no member
  subscribes to, by commit time.

An offset committed with an explicit retention (OffsetCommit v2-4) expires
at its expire timestamp instead. An Empty group left without offsets is
removed (and a group tombstone written if it ever had a generation).

Storage failures never raise out of here; they become the error codes
Kafka's coordinator answers with (see COMMIT_ERRORS and GROUP_ERRORS).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import EncodeError, ProtocolError
from pybroker.protocol.records import NewRecord, read_end_txn_marker, split_batches

from . import OFFSETS_TOPIC, now_ms
from .classic import EMPTY, STABLE, ClassicGroup, GroupConfig, Member, Persist
from .consumer_records import GROUP_EPOCH, decode_value
from .records import (
    ConsumerGroupKey,
    GroupMetadataKey,
    GroupMetadataValue,
    MemberMetadata,
    OffsetCommitKey,
    OffsetCommitValue,
    decode_group_value,
    decode_key,
    decode_offset_value,
    encode_group_key,
    encode_group_value,
    encode_offset_key,
    encode_offset_value,
    subscribed_topics,
)
from .writes import Completion

log = logging.getLogger("pybroker.groups.offsets")

TopicPartition = tuple[str, int]

DEFAULT_METADATA_MAX = 4096  # offset.metadata.max.bytes
CONSUMER = "consumer"
CLASSIC = "classic"
LOAD_CHUNK = 1 << 20

E = ErrorCode
# How Kafka's coordinator reports a failed append of offsets / of group metadata.
COMMIT_ERRORS = {
    E.UNKNOWN_TOPIC_OR_PARTITION: E.COORDINATOR_NOT_AVAILABLE,
    E.NOT_ENOUGH_REPLICAS: E.COORDINATOR_NOT_AVAILABLE,
    E.NOT_ENOUGH_REPLICAS_AFTER_APPEND: E.COORDINATOR_NOT_AVAILABLE,
    E.NOT_LEADER_OR_FOLLOWER: E.NOT_COORDINATOR,
    E.KAFKA_STORAGE_ERROR: E.NOT_COORDINATOR,
    E.MESSAGE_TOO_LARGE: E.INVALID_COMMIT_OFFSET_SIZE,
    E.RECORD_LIST_TOO_LARGE: E.INVALID_COMMIT_OFFSET_SIZE,
    E.INVALID_FETCH_SIZE: E.INVALID_COMMIT_OFFSET_SIZE,
}
GROUP_ERRORS = {
    **COMMIT_ERRORS,
    E.REQUEST_TIMED_OUT: E.REBALANCE_IN_PROGRESS,
    E.MESSAGE_TOO_LARGE: E.UNKNOWN_SERVER_ERROR,
    E.RECORD_LIST_TOO_LARGE: E.UNKNOWN_SERVER_ERROR,
    E.INVALID_FETCH_SIZE: E.UNKNOWN_SERVER_ERROR,
}


@dataclass
class Loaded:
    """What ``load`` found: classic groups' metadata, consumer groups'
    records, and for each id which kind was written last."""

    classic: dict[str, GroupMetadataValue] = field(default_factory=dict)
    consumer: dict[str, dict[ConsumerGroupKey, object]] = field(default_factory=dict)
    latest: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class OffsetAndMetadata:
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp: int = -1
    expire_timestamp: int = -1  # -1: none; retention decides
    # Where its record is in __consumer_offsets (-1: not known): of two
    # commits of a partition, the later record wins whichever completes first.
    record_offset: int = field(default=-1, compare=False, repr=False)


class Groups(Protocol):
    """The coordinator's groups, as the offset store needs them."""

    def get(self, group_id: str): ...

    def remove(self, group_id: str) -> object: ...

    def ids(self) -> Iterable[str]: ...


class Writer(Protocol):
    """groups/writes.py's GroupWriter."""

    def write(self, group_id: str, records: list[NewRecord], now: int, on_done=None): ...


def metadata_length(metadata: str) -> int:
    """Java's String.length(): UTF-16 code units."""
    return len(metadata.encode("utf-16-le", "surrogatepass")) // 2


def group_subscriptions(group) -> set[str] | None:
    """The topics a group's members subscribe to, or None when that is not
    known. A KIP-848 consumer group always knows; a classic group only with
    protocol type "consumer", a protocol chosen and every member's
    subscription readable."""
    if not isinstance(group, ClassicGroup):
        return group.subscribed_topic_names()
    if group.protocol_type != CONSUMER or group.protocol_name is None:
        return None
    topics: set[str] = set()
    for member in group.members.values():
        found = subscribed_topics(member.metadata(group.protocol_name))
        if found is None:
            return None
        topics |= found
    return topics


class OffsetStore:
    def __init__(self, writer: Writer, groups: Groups, config):
        self.writer = writer
        self.groups = groups
        self.config = config
        self.offsets: dict[str, dict[TopicPartition, OffsetAndMetadata]] = {}
        # Commits written but not yet committed, by group: the latest per partition.
        self.pending: dict[str, dict[TopicPartition, OffsetAndMetadata]] = {}
        # Transactional commits (TxnOffsetCommit) in the log, by producer and
        # group: applied on their transaction's commit marker, dropped on abort.
        self.txn_offsets: dict[int, dict[str, dict[TopicPartition, OffsetAndMetadata]]] = {}

    @property
    def metadata_max(self) -> int:
        value = self.config.values.get("offset.metadata.max.bytes")
        return DEFAULT_METADATA_MAX if value is None else value

    # -- reading -------------------------------------------------------------------

    def fetch(self, group_id: str, partitions: Iterable[TopicPartition] | None = None):
        """[(topic, partition, OffsetAndMetadata or None)]: the asked
        partitions in order, or (None) every committed one, sorted."""
        table = self.offsets.get(group_id, {})
        if partitions is None:
            return [(t, p, table[(t, p)]) for t, p in sorted(table)]
        return [(t, p, table.get((t, p))) for t, p in partitions]

    def has_offsets(self, group_id: str) -> bool:
        return bool(self.offsets.get(group_id)) or bool(self.pending.get(group_id))

    def unstable(self, group_id: str, partitions: Iterable[TopicPartition] | None = None) -> bool:
        """Whether a commit of these partitions of the group (any, when
        None) is pending, in an open transaction or still being written:
        OffsetFetch with require_stable waits."""
        staged = self.pending.get(group_id)
        if staged and (partitions is None or any(tp in staged for tp in partitions)):
            return True
        for groups in self.txn_offsets.values():
            table = groups.get(group_id)
            if table and (partitions is None or any(tp in table for tp in partitions)):
                return True
        return False

    # -- writing -------------------------------------------------------------------

    def commit(self, group_id: str, entries: Mapping[TopicPartition, OffsetAndMetadata], now: int) -> Completion:
        """Store ``entries`` in one batch; the completion's result, once the
        batch is committed or has failed, is an error code per partition.
        Metadata over offset.metadata.max.bytes fails just its partition."""
        done, results, accepted, records = self._prepare(group_id, entries)
        if records is None:
            return done
        self.pending.setdefault(group_id, {}).update(accepted)

        def committed(error: ErrorCode, appended) -> None:
            error = COMMIT_ERRORS.get(error, error)
            staged = self.pending.get(group_id, {})
            table = self.offsets.setdefault(group_id, {}) if error == E.NONE else None
            for tp, om in accepted.items():
                if table is not None and tp in staged:  # else deleted meanwhile
                    om.record_offset = appended.base_offset
                    known = table.get(tp)
                    if known is None or known.record_offset <= om.record_offset:
                        table[tp] = om
                if staged.get(tp) is om:
                    del staged[tp]
            if not staged:
                self.pending.pop(group_id, None)
            if table is not None and not table:
                self.offsets.pop(group_id, None)
            results.update(dict.fromkeys(accepted, error))
            done(results)

        self.writer.write(group_id, records, now, committed)
        return done

    def _prepare(self, group_id: str, entries: Mapping[TopicPartition, OffsetAndMetadata]):
        """(completion, results so far, accepted entries, their records): a
        partition whose metadata is over offset.metadata.max.bytes fails
        alone; records is None when nothing is left to write (the
        completion is then done)."""
        done = Completion()
        results: dict[TopicPartition, ErrorCode] = {}
        accepted: dict[TopicPartition, OffsetAndMetadata] = {}
        limit = self.metadata_max
        for tp, om in entries.items():
            if metadata_length(om.metadata) > limit:
                results[tp] = E.OFFSET_METADATA_TOO_LARGE
            else:
                accepted[tp] = om
        records = None
        if accepted:
            try:
                records = [_offset_record(group_id, tp, om) for tp, om in accepted.items()]
            except EncodeError as exc:
                log.warning("cannot encode offsets of group %r: %s", group_id, exc)
                results.update(dict.fromkeys(accepted, COMMIT_ERRORS[E.MESSAGE_TOO_LARGE]))
        if records is None:
            done(results)
        return done, results, accepted, records

    def txn_commit(
        self, group_id: str, producer_id: int, epoch: int, entries: Mapping[TopicPartition, OffsetAndMetadata], now: int
    ) -> Completion:
        """TxnOffsetCommit: ``entries`` as one transactional batch of the
        producer; they count once its transaction commits (``complete_txn``).
        The completion's result is an error code per partition."""
        done, results, accepted, records = self._prepare(group_id, entries)
        if records is None:
            return done

        def written(error: ErrorCode, appended) -> None:
            error = COMMIT_ERRORS.get(error, error)
            if error == E.NONE:
                for om in accepted.values():
                    om.record_offset = appended.base_offset
                self.txn_offsets.setdefault(producer_id, {}).setdefault(group_id, {}).update(accepted)
            results.update(dict.fromkeys(accepted, error))
            done(results)

        self.writer.write(group_id, records, now, written, producer=(producer_id, epoch))
        return done

    def complete_txn(self, producer_id: int, commit: bool, in_partition) -> None:
        """The producer's transaction ended in the partition whose groups
        ``in_partition(group id)`` tells: its offsets there are applied
        (a later record of a partition still wins) or dropped."""
        groups = self.txn_offsets.get(producer_id)
        if not groups:
            return
        for group_id in [g for g in groups if in_partition(g)]:
            staged = groups.pop(group_id)
            if not commit:
                continue
            table = self.offsets.setdefault(group_id, {})
            for tp, om in staged.items():
                known = table.get(tp)
                if known is None or known.record_offset <= om.record_offset:
                    table[tp] = om
        if not groups:
            del self.txn_offsets[producer_id]

    def write_group(self, group: ClassicGroup, now: int | None, assignment, stored) -> None:
        """Write the group's metadata (value v3; ``assignment`` in place of
        the members' own when given); ``stored(error, now)`` once committed
        or failed, with the error the coordinator answers."""
        try:
            record = group_record(group, assignment)
        except EncodeError as exc:
            log.warning("cannot encode metadata of group %r: %s", group.group_id, exc)
            stored(E.UNKNOWN_SERVER_ERROR, _now(now))
            return

        def written(error: ErrorCode, appended) -> None:
            if error != E.NONE:
                log.warning("metadata of group %r generation %d not written: %s",
                            group.group_id, group.generation, error.name)
            stored(GROUP_ERRORS.get(error, error), now_ms())

        self.writer.write(group.group_id, [record], _now(now), written)

    def delete_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition], now: int | None = None
    ) -> tuple[list[TopicPartition], Completion]:
        """Forget these offsets, pending commits included (tombstones for
        those that exist or are pending). An Empty group left without
        offsets dies, as in Kafka. Returns the removed, and the tombstones'
        completion (their storage error code)."""
        return self._remove(group_id, list(partitions), _now(now))

    def delete_group(self, group_id: str, generation: int, now: int | None = None) -> Completion:
        """Tombstones for every offset of a deleted group (pending commits
        included), and for its metadata when it ever had a generation; one
        batch. The cache forgets the offsets whatever happens to the write
        (as Kafka's does)."""
        table = self.offsets.pop(group_id, {})
        pending = self.pending.pop(group_id, {})
        return self._tombstones(group_id, list(dict.fromkeys([*table, *pending])), generation > 0, _now(now))

    def _remove(self, group_id: str, partitions: list[TopicPartition], now: int) -> tuple[list, Completion]:
        table = self.offsets.get(group_id, {})
        staged = self.pending.get(group_id, {})
        removed = [tp for tp in partitions if table.pop(tp, None) is not None]
        dropped = [tp for tp in partitions if staged.pop(tp, None) is not None and tp not in removed]
        if not table:
            self.offsets.pop(group_id, None)
        if not staged:
            self.pending.pop(group_id, None)
        group = self.groups.get(group_id)
        group_dies = _unused(group) and not self.has_offsets(group_id)
        if group_dies:
            self.groups.remove(group_id)
            log.info("group %r is empty and has no offsets left: removed", group_id)
        done = self._tombstones(group_id, removed + dropped, group_dies and has_metadata(group), now)
        return removed, done

    def _tombstones(self, group_id: str, partitions: list[TopicPartition], group_too: bool, now: int) -> Completion:
        try:
            records = [NewRecord(encode_offset_key(group_id, t, p), None) for t, p in partitions]
            if group_too:
                records.append(NewRecord(encode_group_key(group_id), None))
        except EncodeError as exc:
            log.warning("cannot encode tombstones of group %r: %s", group_id, exc)
            return _done(E.UNKNOWN_SERVER_ERROR)
        if not records:
            return _done(E.NONE)

        def written(error: ErrorCode, appended) -> None:
            if error != E.NONE:
                log.warning("tombstones of group %r not written: %s", group_id, error.name)

        return self.writer.write(group_id, records, now, written)

    def append(self, group_id: str, records: list[NewRecord], now: int) -> ErrorCode:
        """Append one batch to the group's partition, not waiting for it to
        be committed: the storage-level error code of the append."""
        done = self.writer.write(group_id, records, now)
        return done.result if done.done else E.NONE

    # -- retention -----------------------------------------------------------------

    def expire(self, now: int) -> int:
        """Drop expired offsets and dead empty groups; how many offsets went."""
        retention = self.config["offsets.retention.minutes"] * 60000
        total = 0
        for group_id in list(dict.fromkeys([*self.offsets, *self.groups.ids()])):
            group = self.groups.get(group_id)
            table = self.offsets.get(group_id, {})
            staged = self.pending.get(group_id, {})
            # Kafka keeps what a pending commit is about to replace.
            expired = [tp for tp in _expired(group, table, now, retention) if tp not in staged]
            if expired or (_unused(group) and not table and not staged):
                total += len(self._remove(group_id, expired, now)[0])
        if total:
            log.info("expired %d committed offsets", total)
        return total

    # -- loading -------------------------------------------------------------------

    def load(self, parts) -> Loaded:
        """Read these partitions of __consumer_offsets into the cache; the
        groups found in them."""
        found = Loaded()
        offsets, self.offsets = self.offsets, {}
        for part in parts:
            self._load_partition(part, found)
        for group_id, records in list(found.consumer.items()):
            if not any(k.kind == GROUP_EPOCH for k in records):
                log.warning("group %r: consumer group records without a group epoch are ignored", group_id)
                del found.consumer[group_id]
        for group_id in list(found.classic.keys() & found.consumer.keys()):
            log.warning("group %r has records of a classic and of a consumer group; the latest, %s, wins",
                        group_id, found.latest[group_id])
            (found.consumer if found.latest[group_id] == CLASSIC else found.classic).pop(group_id)
        staged = {g for groups in self.txn_offsets.values() for g in groups}
        for group_id in self.offsets.keys() | staged:
            if group_id not in found.consumer:
                found.classic.setdefault(group_id, GroupMetadataValue("", 0, None, None))
        offsets.update(self.offsets)
        self.offsets = offsets
        return found

    def forget(self, group_ids: Iterable[str]) -> None:
        """Drop these groups' offsets from the cache (their partition is
        no longer ours)."""
        for group_id in group_ids:
            self.offsets.pop(group_id, None)
            self.pending.pop(group_id, None)
            for groups in self.txn_offsets.values():
                groups.pop(group_id, None)

    def _load_partition(self, part, groups: Loaded) -> None:
        plog = part.log
        # To the log end, as Kafka's loader reads: a new leader learns the
        # high watermark from its followers only after taking over, so its
        # own is behind commits the old leader had already acknowledged.
        offset, end = plog.log_start_offset, plog.log_end_offset
        pending: dict[int, list] = {}  # producer id -> records of its open transaction
        while offset < end:
            data = plog.read(offset, LOAD_CHUNK, max_offset=end).data
            batches, _ = split_batches(data)
            progressed = False
            for batch in batches:
                if batch.next_offset <= offset:
                    continue
                offset, progressed = batch.next_offset, True
                try:
                    records = list(batch.records())
                except ProtocolError as exc:
                    log.error("%s-%d: skipping unreadable batch at %d: %s", part.topic, part.index, batch.base_offset, exc)
                    continue
                if batch.is_control:
                    txn = pending.pop(batch.producer_id, [])
                    for record in records:
                        try:
                            commit = read_end_txn_marker(record).commit
                        except ProtocolError:
                            continue
                        if commit:
                            for key, value, at in txn:
                                self._apply(key, value, groups, at)
                elif batch.is_transactional:
                    pending.setdefault(batch.producer_id, []).extend((r.key, r.value, batch.base_offset) for r in records)
                else:
                    for record in records:
                        self._apply(record.key, record.value, groups, batch.base_offset)
            if not progressed:
                break
        for producer_id, records in pending.items():  # transactions still open: their offsets wait
            for key, value, at in records:
                self._stage(producer_id, key, value, at)

    def _stage(self, producer_id: int, key, value, at: int) -> None:
        try:
            decoded = decode_key(key) if key is not None else None
            if isinstance(decoded, OffsetCommitKey) and value is not None:
                v = decode_offset_value(value)
                om = OffsetAndMetadata(v.offset, v.leader_epoch, v.metadata, v.commit_timestamp, v.expire_timestamp)
                om.record_offset = at
                groups = self.txn_offsets.setdefault(producer_id, {})
                groups.setdefault(decoded.group, {})[(decoded.topic, decoded.partition)] = om
        except ProtocolError as exc:
            log.error("skipping unreadable %s record: %s", OFFSETS_TOPIC, exc)

    def _apply(self, key, value, groups: Loaded, at: int = -1) -> None:
        if key is None:
            return
        try:
            decoded = decode_key(key)
            if isinstance(decoded, OffsetCommitKey):
                tp = (decoded.topic, decoded.partition)
                if value is None:
                    table = self.offsets.get(decoded.group, {})
                    table.pop(tp, None)
                    if not table:
                        self.offsets.pop(decoded.group, None)
                else:
                    v = decode_offset_value(value)
                    om = OffsetAndMetadata(v.offset, v.leader_epoch, v.metadata, v.commit_timestamp, v.expire_timestamp)
                    om.record_offset = at
                    self.offsets.setdefault(decoded.group, {})[tp] = om
            elif isinstance(decoded, GroupMetadataKey):
                if value is None:
                    groups.classic.pop(decoded.group, None)
                else:
                    groups.classic[decoded.group] = decode_group_value(value)
                    groups.latest[decoded.group] = CLASSIC
            elif isinstance(decoded, ConsumerGroupKey):
                records = groups.consumer.setdefault(decoded.group, {})
                if value is None:
                    records.pop(decoded, None)
                else:
                    records[decoded] = decode_value(decoded.kind, value)
                    groups.latest[decoded.group] = CONSUMER
                if not records:
                    groups.consumer.pop(decoded.group)
        except ProtocolError as exc:
            log.error("skipping unreadable %s record: %s", OFFSETS_TOPIC, exc)


# -- groups <-> records ---------------------------------------------------------------


def has_metadata(group) -> bool:
    """Whether the group may have a GroupMetadata record to delete: a
    classic group that ever had a generation (KIP-848 consumer groups have
    records of their own, which consumer_log.py writes and deletes)."""
    return isinstance(group, ClassicGroup) and group.generation > 0


def group_record(group: ClassicGroup, assignment: Mapping[str, bytes] | None = None) -> NewRecord:
    """The group's metadata record (value v3), with ``assignment`` in place
    of the members' own when given; EncodeError if it cannot be."""
    return NewRecord(encode_group_key(group.group_id), encode_group_value(group_value(group, assignment)))


def group_tombstone(group_id: str) -> NewRecord:
    return NewRecord(encode_group_key(group_id), None)


def group_value(group: ClassicGroup, assignment: Mapping[str, bytes] | None = None) -> GroupMetadataValue:
    protocol = group.protocol_name
    return GroupMetadataValue(
        protocol_type=group.protocol_type or "",
        generation=group.generation,
        protocol=protocol,
        leader=group.leader_id,
        current_state_timestamp=group.state_timestamp,
        members=[
            MemberMetadata(
                m.member_id, m.instance_id, m.client_id, m.client_host, m.rebalance_timeout, m.session_timeout,
                m.metadata(protocol) if protocol is not None else b"",
                m.assignment if assignment is None else assignment.get(m.member_id, b""),
            )
            for m in group.members.values()
        ],
    )


def restore_group(config: GroupConfig, persist: Persist, group_id: str, value: GroupMetadataValue, now: int) -> ClassicGroup:
    """A group as ``load`` found it: Stable with its members (each given a
    full session from ``now``) or Empty. The state time is kept as stored
    (-1 when the record predates it), which retention reads."""
    group = ClassicGroup(group_id, now, config, persist)
    group.generation = value.generation
    group.protocol_type = value.protocol_type or None
    group.protocol_name = value.protocol
    group.leader_id = value.leader
    for m in value.members:
        member = Member(
            m.member_id, m.group_instance_id, m.client_id, m.client_host, m.session_timeout, m.rebalance_timeout,
            value.protocol_type, [(value.protocol, m.subscription)] if value.protocol is not None else [],
            assignment=m.assignment,
        )
        member.deadline = now + m.session_timeout
        group.members[m.member_id] = member
        if m.group_instance_id is not None:
            group.statics[m.group_instance_id] = m.member_id
    if group.leader_id not in group.members:
        group.leader_id = next(iter(group.members), None)
    group.state = STABLE if group.members else EMPTY
    group.state_timestamp = value.current_state_timestamp
    return group


# -- helpers ------------------------------------------------------------------------


def _offset_record(group_id: str, tp: TopicPartition, om: OffsetAndMetadata) -> NewRecord:
    value = OffsetCommitValue(om.offset, om.leader_epoch, om.metadata, om.commit_timestamp, om.expire_timestamp)
    return NewRecord(encode_offset_key(group_id, *tp), encode_offset_value(value))


def _unused(group) -> bool:
    """An Empty group, not even a member waiting to join again after
    MEMBER_ID_REQUIRED (removing it would make that join fail)."""
    return group is not None and group.state == EMPTY and not getattr(group, "pending", None)


def _expired(group, table: Mapping[TopicPartition, OffsetAndMetadata], now: int, retention: int) -> list[TopicPartition]:
    protocol_type = group.protocol_type if group is not None else None
    state = group.state if group is not None else EMPTY
    subscribed: set[str] = set()
    if group is not None and not isinstance(group, ClassicGroup):
        # A KIP-848 consumer group, in any state: unsubscribed topics by commit time.
        subscribed = group.subscribed_topic_names()
        base = lambda om: om.commit_timestamp
    elif protocol_type and state == EMPTY:
        since = group.state_timestamp
        base = (lambda om: since) if since >= 0 else (lambda om: om.commit_timestamp)
    elif protocol_type == CONSUMER and state == STABLE and (topics := group_subscriptions(group)) is not None:
        subscribed = topics
        base = lambda om: om.commit_timestamp
    elif not protocol_type:
        base = lambda om: om.commit_timestamp
    else:
        return []
    return [
        tp
        for tp, om in table.items()
        if tp[0] not in subscribed
        and (now >= om.expire_timestamp if om.expire_timestamp >= 0 else now - base(om) >= retention)
    ]


def _now(now: int | None) -> int:
    return now_ms() if now is None else now


def _done(error: ErrorCode) -> Completion:
    done = Completion()
    done(error)
    return done
