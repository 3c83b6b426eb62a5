"""Fetch v4-13 (api key 1).

v4 isolation level, last stable offset and aborted transactions; v5 log
start offset; v7 incremental fetch sessions (KIP-227, see fetch_sessions);
v9 current leader epoch (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH); v11
rack id and preferred read replica (always -1: no follower fetching);
v12 flexible, last fetched epoch; v13 topics by id (UNKNOWN_TOPIC_ID).

Whole batches are returned, read from the log up to the high watermark
(read_committed reads to the last stable offset, which equals it while
there are no transactions). On a plain TCP connection they go as file
regions, sent from the segment files with sendfile; otherwise as bytes. The first partition with data gets its first
batch even when it exceeds the limits (KIP-74); after that every partition
is bounded by its own max bytes and what is left of the response's. When
less than min_bytes is available the request waits, up to max_wait_ms, for
the high watermark of any partition it asked for to move.

A follower's Fetch (replica id >= 0, cluster mode) is answered by the
leader's side of replication (replica/replica_fetch.py): batches up to
the log end rather than the high watermark, or a DivergingEpoch when the
follower's log has left the leader's; see ``_replica_fetch``. The
consumers' path does not look at it beyond the replica id.

A consumer fetching from a broker that does not lead the partition (a
follower, or not hosting it: cluster mode) gets NOT_LEADER_OR_FOLLOWER
with -1 offsets, after the leader epoch check, as Kafka answers.

Each partition is read on its own: one in an offline log directory (or
whose read fails, which takes the directory offline) gets
KAFKA_STORAGE_ERROR, any other exception UNKNOWN_SERVER_ERROR (logged with
its traceback), both with -1 offsets as Kafka answers a failed read; the
other partitions of the response are unaffected.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import trio

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.fetch_response import (
    AbortedTransaction,
    EpochEndOffset,
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from pybroker.protocol.primitives import ZERO_UUID
from pybroker.protocol.registry import ApiKey

from ..fetch_sessions import SessionPartition
from ..replica.partition import next_append, next_commit
from ..replica.replica_fetch import idle_token, read_for_follower, refetch_idle
from . import Later, handles

if TYPE_CHECKING:
    from ..cluster.local import LocalMetadata
    from ..fetch_sessions import FetchSessionCache
    from ..replica import ReplicaManager

logger = logging.getLogger("pybroker.fetch")
READ_COMMITTED = 1


@handles(ApiKey.FETCH, 4, 13)
def fetch(
    ctx, req, *, replicas: ReplicaManager, metadata: LocalMetadata, fetch_sessions: FetchSessionCache, authorizer
):
    version = ctx.api_version
    if req.replica_id >= 0:
        if authorizer is not None and not authorizer.cluster(ctx, Operation.CLUSTER_ACTION):
            return _all_failed(req, version, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
        return _replica_fetch(ctx, req, replicas, metadata, fetch_sessions)
    try:
        session, full = _session(fetch_sessions, req, version)
    except KafkaError as exc:
        return FetchResponse(error_code=exc.code, session_id=0)
    wanted = _wanted(metadata, req, version, session, full)
    if authorizer is not None:
        wanted = _readable(ctx, authorizer, wanted, version)
    zero_copy = ctx.zero_copy
    response, size, parts, sent = _build(replicas, req, version, wanted, session, full, zero_copy)
    if size >= req.min_bytes or req.max_wait_ms <= 0 or not parts:
        return _finish(response, wanted, session, full, sent)

    async def long_poll():
        nonlocal response
        with trio.move_on_after(req.max_wait_ms / 1000):
            while True:
                await next_commit(parts)
                response, size, _, _ = _build(replicas, req, version, wanted, session, full, zero_copy)
                if size >= req.min_bytes:
                    break
        response, _, _, sent = _build(replicas, req, version, wanted, session, full, zero_copy)
        return _finish(response, wanted, session, full, sent)

    return Later(long_poll)


def _readable(ctx, authorizer, wanted: list, version: int) -> list:
    """READ on each topic: the partitions of the others (asked now or held
    by the session) are answered TOPIC_AUTHORIZATION_FAILED."""
    names = {w.topic for w in wanted if isinstance(w, SessionPartition)}
    denied = names - authorizer.allowed_names(ctx, Operation.READ, ResourceType.TOPIC, names)
    if not denied:
        return wanted
    return [
        (w.topic if version < 13 else None, w.topic_id, w.index, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
        if isinstance(w, SessionPartition) and w.topic in denied else w
        for w in wanted
    ]


def _all_failed(req, version: int, code: ErrorCode) -> FetchResponse:
    """A follower without CLUSTER_ACTION: every partition it asked for fails."""
    return FetchResponse(
        session_id=0,
        responses=[
            FetchableTopicResponse(
                topic=t.topic if version < 13 else "",
                topic_id=t.topic_id if version >= 13 else ZERO_UUID,
                partitions=[_failed(p.partition, code) for p in t.partitions],
            )
            for t in req.topics
        ],
    )


def _session(fetch_sessions, req, version):
    if version < 7:
        return None, True
    return fetch_sessions.resolve(req.session_id, req.session_epoch)


def _wanted(md, req, version, session, full) -> list[SessionPartition | tuple]:
    """The partitions to answer for, in order: SessionPartition for known
    topics, (topic name or None, topic id, index, error) for unknown ones."""
    out: list = []
    fresh: list[SessionPartition] = []
    for t in req.topics:
        if version >= 13:
            info = md.topic_by_id(t.topic_id)
            missing = ErrorCode.UNKNOWN_TOPIC_ID
        else:
            info = md.topic(t.topic)
            missing = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        for p in t.partitions:
            if info is None or p.partition >= len(info.partitions):
                out.append((t.topic if version < 13 else None, t.topic_id, p.partition, missing))
                continue
            sp = SessionPartition(
                info.name, info.topic_id, p.partition, p.fetch_offset, p.partition_max_bytes, p.current_leader_epoch
            )
            fresh.append(sp)
    if session is None:
        return out + fresh
    if full:
        session.partitions.clear()
    for sp in fresh:
        key = (sp.topic, sp.index)
        old = session.partitions.get(key)
        if old is not None:
            sp.high_watermark, sp.last_stable_offset, sp.log_start_offset = (
                old.high_watermark,
                old.last_stable_offset,
                old.log_start_offset,
            )
        session.partitions[key] = sp
    for t in req.forgotten_topics_data or []:
        info = md.topic_by_id(t.topic_id) if version >= 13 else md.topic(t.topic)
        if info is not None:
            for idx in t.partitions:
                session.partitions.pop((info.name, idx), None)
    # Unknown topics are answered once, not kept in the session.
    return out + list(session.partitions.values())


def _build(replicas, req, version, wanted, session, full, zero_copy: bool):
    isolation = req.isolation_level if version >= 4 else 0
    remaining = req.max_bytes if version >= 3 else 2**31 - 1
    first = True
    size = 0
    parked = []
    sent = []  # (partition, record bytes) of those with records
    by_topic: dict = {}
    order: list = []
    for w in wanted:
        if isinstance(w, tuple):
            name, topic_id, index, code = w
            data = _failed(index, code)
            key = (name, topic_id)
        else:
            part = replicas.partition(w.topic, w.index)
            try:
                if part is None:
                    raise replicas.missing(w.topic, w.index)
                data = _read_partition(part, w, isolation, remaining, first, zero_copy)
            except KafkaError as exc:
                data = _failed(w.index, exc.code)
            except Exception:
                logger.exception("fetch from %s-%d failed", w.topic, w.index)
                data = _failed(w.index, ErrorCode.UNKNOWN_SERVER_ERROR)
            key = (w.topic, w.topic_id)
            if part is not None:
                parked.append(part)
            n = len(data.records) if data.records is not None else 0
            if n:
                first = False
                remaining -= n
                size += n
                sent.append((part, n))
            if (
                session is not None
                and not full
                and not (n or data.error_code or w.has_news(data.high_watermark, data.last_stable_offset, data.log_start_offset))
            ):
                continue
        if key not in by_topic:
            by_topic[key] = []
            order.append(key)
        by_topic[key].append(data)
    topics = [
        FetchableTopicResponse(
            topic=name if version < 13 else "", topic_id=topic_id if version >= 13 else ZERO_UUID, partitions=by_topic[(name, topic_id)]
        )
        for name, topic_id in order
    ]
    response = FetchResponse(session_id=session.id if session is not None else 0, responses=topics)
    return response, size, parked, sent


def _failed(index: int, code: ErrorCode) -> PartitionData:
    # Partitions with an error still carry empty (not null) records: Kafka
    # sends them so, and librdkafka fails to parse a null record set.
    return PartitionData(partition_index=index, error_code=code, high_watermark=-1, last_stable_offset=-1, log_start_offset=-1, records=b"")


def _read_partition(
    part, w: SessionPartition, isolation: int, remaining: int, first: bool, zero_copy: bool
) -> PartitionData:
    # Positional: once per partition of every Fetch.
    read = part.read(w.fetch_offset, min(w.max_bytes, remaining), isolation, -1, w.leader_epoch, first, zero_copy)
    return PartitionData(
        partition_index=w.index,
        error_code=read.error,
        high_watermark=read.high_watermark,
        last_stable_offset=read.last_stable_offset,
        log_start_offset=read.log_start_offset,
        aborted_transactions=_aborted(read.aborted) if isolation == READ_COMMITTED else None,
        preferred_read_replica=-1,
        records=read.records,
    )


def _aborted(txns) -> list:
    if not txns:
        return []
    return [AbortedTransaction(producer_id=t.producer_id, first_offset=t.first_offset) for t in txns]


def _finish(response, wanted, session, full, sent):
    """The response to send; ``sent``: (partition, record bytes) it carries,
    counted as the partitions' bytes out (Kafka's BytesOutPerSec)."""
    for part, n in sent:
        part.bytes_out += n
    if session is not None:
        # A new session already expects epoch 1 (FetchSession starts there);
        # only an incremental fetch moves it on. Bumping it here too made
        # kafka-python's second fetch (epoch 1) fail with
        # INVALID_FETCH_SESSION_EPOCH.
        if not full:
            session.epoch += 1
        sent = {}
        for topic in response.responses:
            for p in topic.partitions:
                sent[(topic.topic, topic.topic_id, p.partition_index)] = p
        for w in wanted:
            if isinstance(w, SessionPartition):
                p = sent.get((w.topic, w.topic_id, w.index)) or sent.get(("", w.topic_id, w.index))
                if p is not None and not p.error_code:
                    w.remember(p.high_watermark, p.last_stable_offset, p.log_start_offset)
    return response


# -- a follower's Fetch --------------------------------------------------------


def _replica_fetch(ctx, req, replicas, md, fetch_sessions):
    """A follower copying this leader (replica_id >= 0): each partition is
    answered by ``replica_fetch.read_for_follower`` — batches up to the log
    end, or DivergingEpoch — and a long poll waits for an append (not only
    for the high watermark, as a consumer's does), but ends at once on an
    error or a divergence, which the follower must act on (Kafka's
    DelayedFetch).

    Followers fetch in sessions (KIP-227), as Kafka's do: the session
    keeps each partition's last request, an incremental request names only
    what changed, and the answer only partitions with records, a moved
    high watermark or log start, an error or a divergence. Every partition
    of the session counts as fetched again at its kept offset, so an idle
    partition's follower stays caught up without being named."""
    version = ctx.api_version
    try:
        session, full = _session(fetch_sessions, req, version)
    except KafkaError as exc:
        return FetchResponse(error_code=exc.code, session_id=0)
    wanted = _replica_wanted(replicas, md, req, version, session, full)
    replica_id = req.replica_id
    now = int(time.time() * 1000)
    zero_copy = ctx.zero_copy
    built = _build_replica(replicas, req, version, wanted, replica_id, zero_copy, now, True, session, full)
    _, size, urgent, parts, _ = built
    # Nothing to wait on (a session that holds no partition) still waits
    # out max_wait_ms, as Kafka's DelayedFetch does: answering at once would
    # make the follower ask again at once.
    if urgent or size >= req.min_bytes or req.max_wait_ms <= 0:
        return _finish_replica(built, session, full)

    async def long_poll():
        with trio.move_on_after(req.max_wait_ms / 1000):
            while True:
                await next_append(parts)
                built = _build_replica(replicas, req, version, wanted, replica_id, zero_copy, now, False, session, full)
                if built[2] or built[1] >= req.min_bytes:
                    return _finish_replica(built, session, full)
        built = _build_replica(replicas, req, version, wanted, replica_id, zero_copy, now, False, session, full)
        return _finish_replica(built, session, full)

    return Later(long_poll)


class _Asked:
    """One partition a follower fetches: its request (a FetchPartition),
    the replica here (None: not hosted), and what the follower was last
    told of the high watermark and log start (-1: never)."""

    __slots__ = ("code", "fetch", "high_watermark", "idle", "log_start_offset", "name", "part", "topic_id")

    def __init__(self, name, topic_id, fetch, part, code=None):
        self.name = name
        self.topic_id = topic_id
        self.fetch = fetch
        self.part = part
        self.code = code
        self.high_watermark = -1
        self.log_start_offset = -1
        self.idle = None  # replica_fetch.idle_token's, while nothing new is found


def _replica_wanted(replicas, md, req, version, session, full) -> list[_Asked]:
    """The partitions to answer: the request's, and with a session every
    other one it holds (their replicas looked up again: a partition may
    have been re-created since)."""
    out: list[_Asked] = []
    asked: list[_Asked] = []
    for t in req.topics:
        info = md.topic_by_id(t.topic_id) if version >= 13 else md.topic(t.topic)
        for p in t.partitions:
            if info is None or p.partition >= len(info.partitions):
                code = ErrorCode.UNKNOWN_TOPIC_ID if version >= 13 else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                out.append(_Asked(t.topic, t.topic_id, p, None, code))  # answered once, not kept
            else:
                asked.append(_Asked(info.name, info.topic_id, p, None))
    if session is None:
        kept = asked
    else:
        held = session.partitions
        if full:
            held.clear()
        for t in req.forgotten_topics_data or []:
            info = md.topic_by_id(t.topic_id) if version >= 13 else md.topic(t.topic)
            name = info.name if info is not None else t.topic
            for index in t.partitions:
                held.pop((name, index), None)
        for a in asked:
            key = (a.name, a.fetch.partition)
            old = held.get(key)
            if old is not None:
                a.high_watermark, a.log_start_offset = old.high_watermark, old.log_start_offset
            held[key] = a
        kept = list(held.values())
    for a in kept:
        a.part = replicas.partition(a.name, a.fetch.partition)
    return out + kept


def _build_replica(replicas, req, version, wanted, replica_id, zero_copy, now, record, session, full):
    """(response, bytes of records, whether something needs the follower
    at once, the partitions to wait on, [(_Asked, PartitionData)] answered)."""
    remaining = req.max_bytes
    first = True
    size = 0
    urgent = False
    parts = []
    by_topic: dict = {}
    incremental = session is not None and not full
    answered = []
    for a in wanted:
        p = a.fetch
        diverging = None
        if a.code is not None:
            data = _failed(p.partition, a.code)
        else:
            part = a.part
            try:
                if part is None:
                    raise replicas.missing(a.name, p.partition)
                parts.append(part)
                if incremental and a.idle is not None:
                    if refetch_idle(part, a.idle, now, record):
                        continue  # as the last round left it: nothing to answer
                    a.idle = None
                read = read_for_follower(
                    part,
                    replica_id,
                    p.fetch_offset,
                    p.current_leader_epoch,
                    p.last_fetched_epoch,
                    min(p.partition_max_bytes, remaining),
                    first,
                    zero_copy,
                    now,
                    record,
                )
                diverging = read.diverging
                if incremental and not (
                    read.error
                    or diverging is not None
                    or len(read.records)
                    or read.high_watermark != a.high_watermark
                    or read.log_start_offset != a.log_start_offset
                ):
                    if record:
                        a.idle = idle_token(part, replica_id, p.fetch_offset)
                    continue  # nothing new: an incremental answer leaves it out
                data = PartitionData(
                    partition_index=p.partition,
                    error_code=read.error,
                    high_watermark=read.high_watermark,
                    last_stable_offset=read.high_watermark,
                    log_start_offset=read.log_start_offset,
                    preferred_read_replica=-1,
                    records=read.records,
                )
                if diverging is not None:
                    data.diverging_epoch = EpochEndOffset(epoch=diverging[0], end_offset=diverging[1])
                    urgent = True
            except KafkaError as exc:
                data = _failed(p.partition, exc.code)
            except Exception:
                logger.exception("replica fetch of %s-%d failed", a.name, p.partition)
                data = _failed(p.partition, ErrorCode.UNKNOWN_SERVER_ERROR)
        if data.error_code:
            urgent = True
        n = len(data.records)
        if n:
            first = False
            remaining -= n
            size += n
        by_topic.setdefault((a.name, a.topic_id), []).append(data)
        answered.append((a, data))
    topics = [
        FetchableTopicResponse(
            topic=name if version < 13 else "", topic_id=topic_id if version >= 13 else ZERO_UUID, partitions=found
        )
        for (name, topic_id), found in by_topic.items()
    ]
    response = FetchResponse(session_id=session.id if session is not None else 0, responses=topics)
    return response, size, urgent, parts, answered


def _finish_replica(built, session, full):
    """The response of ``built``, noting in the session what the
    follower is told now."""
    response, _, _, _, answered = built
    if session is not None:
        if not full:
            session.epoch += 1
        for a, data in answered:
            if not data.error_code:
                a.high_watermark, a.log_start_offset = data.high_watermark, data.log_start_offset
    return response
