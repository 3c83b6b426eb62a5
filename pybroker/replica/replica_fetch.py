"""The leader's side of a follower's Fetch: what one partition answers.

A Fetch whose replica id is a broker's (>= 0) comes from a follower
copying this leader (Kafka's Partition.fetchRecords for a follower). Per
partition, in Kafka's order:

1. the request's current leader epoch against ours: older is
   FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH (the follower waits for
   the metadata that names this epoch);
2. leadership: NOT_LEADER_OR_FOLLOWER on any other replica; a broker
   that is not a replica of the partition is told UNKNOWN_LEADER_EPOCH
   (it may be one in a state this broker has not seen yet);
3. divergence: the follower's last fetched epoch must end on this log no
   earlier than its fetch offset, else the answer is DivergingEpoch (that
   epoch's largest predecessor known here, and where it ends) and no
   records, and the follower truncates (truncation.py); an epoch this log
   cannot place, or a fetch offset below the log start, is
   OFFSET_OUT_OF_RANGE;
4. the fetch offset within [log start, log end], else OFFSET_OUT_OF_RANGE;
5. whole batches from the fetch offset up to the log end — not the high
   watermark: the follower copies what is not committed yet, which is
   how it gets committed;
6. only then, with no error and no divergence, the leader records that
   the follower holds everything below its fetch offset
   (``Partition.follower_fetched``), which may move the high watermark.

The epoch of the leader's current term counts as running to the log end
even before this term's first batch (``end_offset_for``), so an
answer is exact from the moment of election.
"""

from __future__ import annotations

from typing import NamedTuple

from pybroker.protocol.error_codes import ErrorCode
from pybroker.storage.log import KafkaStorageError, OffsetOutOfRangeError

from .partition import Role, end_offset_for, storage_error
from .truncation import UNDEFINED, diverges

NO_DIVERGENCE = None


class ReplicaRead(NamedTuple):
    """One partition's answer to a follower: batches (bytes, a view or a
    FileRegion), the leader's high watermark and log start, an error, and
    the (epoch, end offset) the follower's log diverges after (None when
    it does not)."""

    records: object
    high_watermark: int
    log_start_offset: int
    error: ErrorCode
    diverging: tuple[int, int] | None


def _refused(code: ErrorCode, hw: int = -1, start: int = -1) -> ReplicaRead:
    return ReplicaRead(b"", hw, start, code, NO_DIVERGENCE)


def read_for_follower(
    part,
    replica_id: int,
    fetch_offset: int,
    current_leader_epoch: int,
    last_fetched_epoch: int,
    max_bytes: int,
    min_one_message: bool,
    zero_copy: bool,
    now_ms: int,
    record: bool = True,
) -> ReplicaRead:
    """Answer follower ``replica_id`` fetching ``part`` (see the module
    docstring). ``record`` False for a long poll's later reads: the
    follower's position was recorded when its request arrived. Raises
    KafkaError KAFKA_STORAGE_ERROR."""
    log = part.log
    if log.offline is not None:
        part.check_online()
    epoch = part.info.leader_epoch
    if current_leader_epoch >= 0 and current_leader_epoch != epoch:
        code = ErrorCode.FENCED_LEADER_EPOCH if current_leader_epoch < epoch else ErrorCode.UNKNOWN_LEADER_EPOCH
        return _refused(code)
    if part.role is not Role.LEADER:
        return _refused(ErrorCode.NOT_LEADER_OR_FOLLOWER)
    if replica_id not in part.info.replicas:
        # Kafka's followerReplicaOrThrow: (replica, epoch) not known here yet.
        return _refused(
            ErrorCode.UNKNOWN_LEADER_EPOCH if current_leader_epoch >= 0 else ErrorCode.NOT_LEADER_OR_FOLLOWER
        )
    start = log.log_start_offset
    end = log.log_end_offset
    if last_fetched_epoch >= 0:
        found = end_offset_for(log, epoch, last_fetched_epoch)
        if found[0] == UNDEFINED or found[1] == UNDEFINED or fetch_offset < start:
            return _refused(ErrorCode.OFFSET_OUT_OF_RANGE, log.high_watermark, start)
        if diverges(found, last_fetched_epoch, fetch_offset):
            return ReplicaRead(b"", log.high_watermark, start, ErrorCode.NONE, found)
    if fetch_offset < start or fetch_offset > end:
        return _refused(ErrorCode.OFFSET_OUT_OF_RANGE, log.high_watermark, start)
    data = b""
    if fetch_offset < end and (max_bytes > 0 or min_one_message):
        try:
            data = log.read(fetch_offset, max(max_bytes, 1), end, zero_copy)[0]
        except OffsetOutOfRangeError:
            return _refused(ErrorCode.OFFSET_OUT_OF_RANGE, log.high_watermark, start)
        except KafkaStorageError as exc:
            raise storage_error(exc) from None
        if not min_one_message and len(data) > max_bytes:
            data = b""  # only the response's first batch may exceed the limits
    if record:
        part.follower_fetched(replica_id, fetch_offset, now_ms)
    return ReplicaRead(data, log.high_watermark, log.log_start_offset, ErrorCode.NONE, NO_DIVERGENCE)


# -- idle partitions of a fetch session -------------------------------------------------
#
# A follower's session holds every partition it follows from this leader, and
# each of its Fetches counts as fetching all of them again (KIP-227). Most are
# idle: the follower holds the whole log, which is all committed. Reading and
# recording such a partition in full each round cost the leader more than the
# partitions that carry data, on every round; the token below lets the next
# identical fetch of it do only what Kafka's updateFollowerFetchState would
# change (the follower's fetch and caught-up times).


def idle_token(part, replica_id: int, fetch_offset: int):
    """After a full read that found nothing new: what must stay as it is for
    the same follower's next fetch at ``fetch_offset`` to change nothing
    but its times — or None when that fetch could change more (the follower
    behind, outside the ISR, the high watermark below the log end)."""
    leader = part.leader_state
    log = part.log
    if leader is None or part.role is not Role.LEADER or log.offline is not None:
        return None
    end = log.log_end_offset
    follower = leader.followers.get(replica_id)
    if fetch_offset != end or log.high_watermark != end or replica_id not in leader.isr or follower is None:
        return None
    if follower.leo != end:
        return None
    return (part.info, leader, follower, end, log.log_start_offset)


def refetch_idle(part, token, now_ms: int, record: bool) -> bool:
    """Whether ``part`` is as ``token`` found it (same partition state,
    leadership, log end, high watermark and log start): then the fetch is
    recorded (if ``record``) and there is nothing to answer."""
    info, leader, follower, end, start = token
    log = part.log
    if (
        part.info is not info
        or part.leader_state is not leader
        or part.role is not Role.LEADER
        or log.offline is not None
        or log.log_end_offset != end
        or log.high_watermark != end
        or log.log_start_offset != start
    ):
        return False
    if record:
        follower.fetched(end, now_ms, end)
    return True
