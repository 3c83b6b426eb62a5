"""A follower asking its leader where its log starts and where epochs end:
ListOffsets (earliest) and OffsetForLeaderEpoch, as Kafka's
ReplicaFetcherThread does, for many partitions in one request each.
Answers come back by (topic, partition); a partition the leader left out
of its answer is absent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pybroker.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic
from pybroker.protocol.messages.offset_for_leader_epoch_request import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)

LIST_OFFSETS_VERSION = 7
OFFSET_FOR_LEADER_EPOCH_VERSION = 4
EARLIEST = -2

Key = tuple[str, int]
Call = Callable[[object, int], Awaitable[object]]


def _by_topic(keys) -> dict[str, list[Key]]:
    out: dict[str, list[Key]] = {}
    for key in keys:
        out.setdefault(key[0], []).append(key)
    return out


async def epoch_ends(call: Call, replica_id: int, asked: dict[Key, tuple[int, int]]) -> dict[Key, tuple[int, int, int]]:
    """{key: (current leader epoch, epoch)} -> {key: (error, epoch, end offset)}."""
    request = OffsetForLeaderEpochRequest(
        replica_id=replica_id,
        topics=[
            OffsetForLeaderTopic(
                topic=topic,
                partitions=[
                    OffsetForLeaderPartition(
                        partition=i, current_leader_epoch=asked[t, i][0], leader_epoch=asked[t, i][1]
                    )
                    for t, i in keys
                ],
            )
            for topic, keys in _by_topic(asked).items()
        ],
    )
    response = await call(request, OFFSET_FOR_LEADER_EPOCH_VERSION)
    return {
        (t.topic, p.partition): (p.error_code, p.leader_epoch, p.end_offset)
        for t in response.topics
        for p in t.partitions
        if (t.topic, p.partition) in asked
    }


async def log_starts(call: Call, replica_id: int, asked: dict[Key, int]) -> dict[Key, tuple[int, int]]:
    """{key: current leader epoch} -> {key: (error, log start offset)}."""
    request = ListOffsetsRequest(
        replica_id=replica_id,
        topics=[
            ListOffsetsTopic(
                name=topic,
                partitions=[
                    ListOffsetsPartition(partition_index=i, current_leader_epoch=asked[t, i], timestamp=EARLIEST)
                    for t, i in keys
                ],
            )
            for topic, keys in _by_topic(asked).items()
        ],
    )
    response = await call(request, LIST_OFFSETS_VERSION)
    return {
        (t.name, p.partition_index): (p.error_code, p.offset)
        for t in response.topics
        for p in t.partitions
        if (t.name, p.partition_index) in asked
    }
