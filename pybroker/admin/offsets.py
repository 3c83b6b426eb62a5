"""Partition offsets by ListOffsets, each asked of the partition's leader."""

from __future__ import annotations

from collections import defaultdict

from pybroker.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic

from .client import AdminError, Client, check

LATEST = -1
EARLIEST = -2
READ_UNCOMMITTED = 0


def list_offsets(client: Client, leaders: dict[tuple[str, int], int], timestamp: int) -> dict[tuple[str, int], int]:
    """(topic, partition) -> offset at ``timestamp`` (LATEST, EARLIEST or
    milliseconds: the first offset whose timestamp is at least that, -1
    when there is none)."""
    by_leader: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for (topic, partition), leader in leaders.items():
        by_leader[leader][topic].append(partition)
    found = {}
    for leader, topics in by_leader.items():
        body = ListOffsetsRequest(
            replica_id=-1,
            isolation_level=READ_UNCOMMITTED,
            topics=[
                ListOffsetsTopic(name=t, partitions=[ListOffsetsPartition(partition_index=p, timestamp=timestamp)
                                                     for p in sorted(ps)])
                for t, ps in topics.items()
            ],
        )
        response, _ = client.broker(leader).call(body, 1, 10)
        for t in response.topics:
            for p in t.partitions:
                check(p.error_code, subject=f"{t.name}-{p.partition_index}")
                found[t.name, p.partition_index] = p.offset
    return found


def topic_leaders(client: Client, topic: str, partitions: list[int] | None = None) -> dict[tuple[str, int], int]:
    leaders = client.partitions(topic)
    if partitions is not None:
        missing = sorted(set(partitions) - set(leaders))
        if missing:
            raise AdminError("UNKNOWN_TOPIC_OR_PARTITION", f"topic '{topic}' has no partition {missing[0]}")
        leaders = {p: leaders[p] for p in partitions}
    return {(topic, p): leader for p, leader in sorted(leaders.items())}
