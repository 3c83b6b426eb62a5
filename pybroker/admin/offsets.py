"""Partition offsets by ListOffsets, each asked of the partition's leader."""

from __future__ import annotations

import time
from collections import defaultdict

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic

from .client import AdminError, Client, check

LATEST = -1
EARLIEST = -2
READ_UNCOMMITTED = 0


def list_offsets(client: Client, leaders: dict[tuple[str, int], int], timestamp: int) -> dict[tuple[str, int], int]:
    """(topic, partition) -> offset at ``timestamp`` (LATEST, EARLIEST or
    milliseconds: the first offset whose timestamp is at least that, -1
    when there is none).

    A partition answered with a retriable error (NOT_LEADER_OR_FOLLOWER
    from a broker that does not lead it yet, or no longer) is asked again
    of its leader in fresh metadata until the client's timeout, as Kafka's
    AdminClient does; any other error, or one that lasts, is raised."""
    found: dict[tuple[str, int], int] = {}
    deadline = time.monotonic() + client.timeout
    while True:
        retry = {}
        for leader, topics in _by_leader(leaders).items():
            response, _ = client.broker(leader).call(_request(topics, timestamp), 1, 10)
            for t in response.topics:
                for p in t.partitions:
                    code = p.error_code
                    if code and ErrorCode.for_code(code).retriable and time.monotonic() < deadline:
                        retry[t.name, p.partition_index] = leader
                        continue
                    check(code, subject=f"{t.name}-{p.partition_index}")
                    found[t.name, p.partition_index] = p.offset
        if not retry:
            return found
        time.sleep(0.1)  # a retry pause, not synchronisation
        leaders = _fresh_leaders(client, retry)


def _by_leader(leaders: dict[tuple[str, int], int]) -> dict[int, dict[str, list[int]]]:
    by_leader: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for (topic, partition), leader in leaders.items():
        by_leader[leader][topic].append(partition)
    return by_leader


def _request(topics: dict[str, list[int]], timestamp: int) -> ListOffsetsRequest:
    return ListOffsetsRequest(
        replica_id=-1,
        isolation_level=READ_UNCOMMITTED,
        topics=[
            ListOffsetsTopic(name=t, partitions=[ListOffsetsPartition(partition_index=p, timestamp=timestamp)
                                                 for p in sorted(ps)])
            for t, ps in topics.items()
        ],
    )


def _fresh_leaders(client: Client, asked: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """The leaders the metadata names now for ``asked``; the broker asked
    last where it names none yet."""
    meta = client.metadata(sorted({topic for topic, _ in asked}))
    now = {(t.name, p.partition_index): p.leader_id for t in meta.topics for p in t.partitions if p.leader_id >= 0}
    return {tp: now.get(tp, leader) for tp, leader in asked.items()}


def topic_leaders(client: Client, topic: str, partitions: list[int] | None = None) -> dict[tuple[str, int], int]:
    leaders = client.partitions(topic)
    if partitions is not None:
        missing = sorted(set(partitions) - set(leaders))
        if missing:
            raise AdminError("UNKNOWN_TOPIC_OR_PARTITION", f"topic '{topic}' has no partition {missing[0]}")
        leaders = {p: leaders[p] for p in partitions}
    return {(topic, p): leader for p, leader in sorted(leaders.items())}
