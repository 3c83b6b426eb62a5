"""A group's committed offsets: OffsetFetch and OffsetCommit, both sent to
the group's coordinator. OffsetFetch v8 moved the group into an array;
both shapes are spoken, whichever the broker has."""

from __future__ import annotations

from collections import defaultdict

from pybroker.protocol.messages.offset_commit_request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from pybroker.protocol.messages.offset_fetch_request import (
    OffsetFetchRequest,
    OffsetFetchRequestGroup,
    OffsetFetchRequestTopic,
    OffsetFetchRequestTopics,
)
from pybroker.protocol.registry import ApiKey

from .client import Connection, check

Offsets = dict[tuple[str, int], int]


def _by_topic(partitions) -> dict[str, list[int]]:
    topics: dict[str, list[int]] = defaultdict(list)
    for topic, partition in partitions:
        topics[topic].append(partition)
    return topics


def fetch_committed(conn: Connection, group: str, partitions=None) -> Offsets:
    """(topic, partition) -> committed offset, for ``partitions`` (None:
    every partition the group has an offset for). Absent: nothing committed."""
    version = conn.version(ApiKey.OFFSET_FETCH, 1, 9)
    if version < 2 and partitions is None:
        version = conn.version(ApiKey.OFFSET_FETCH, 2, 9)  # "all topics" is v2+
    wanted = None if partitions is None else _by_topic(partitions)
    if version >= 8:
        topics = None if wanted is None else [OffsetFetchRequestTopics(name=t, partition_indexes=ps)
                                              for t, ps in wanted.items()]
        body = OffsetFetchRequest(groups=[OffsetFetchRequestGroup(group_id=group, topics=topics)])
    else:
        topics = None if wanted is None else [OffsetFetchRequestTopic(name=t, partition_indexes=ps)
                                              for t, ps in wanted.items()]
        body = OffsetFetchRequest(group_id=group, topics=topics)
    response, _ = conn.call(body, version, version)
    if version >= 8:
        (result,) = response.groups
    else:
        result = response
    check(getattr(result, "error_code", 0), subject=f"group {group}")
    found = {}
    for t in result.topics:
        for p in t.partitions:
            check(p.error_code, subject=f"group {group}, {t.name}-{p.partition_index}")
            if p.committed_offset >= 0:
                found[t.name, p.partition_index] = p.committed_offset
    return found


def commit(conn: Connection, group: str, offsets: Offsets, generation: int = -1, member_id: str = "") -> None:
    """Commit ``offsets``; a simple commit (no member) outside a generation."""
    body = OffsetCommitRequest(
        group_id=group,
        generation_id_or_member_epoch=generation,
        member_id=member_id,
        topics=[
            OffsetCommitRequestTopic(name=t, partitions=[
                OffsetCommitRequestPartition(partition_index=p, committed_offset=offsets[t, p], committed_metadata="")
                for p in sorted(ps)
            ])
            for t, ps in _by_topic(offsets).items()
        ],
    )
    response, _ = conn.call(body, 2, 9)
    for t in response.topics:
        for p in t.partitions:
            check(p.error_code, subject=f"group {group}, {t.name}-{p.partition_index}")
