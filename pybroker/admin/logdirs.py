"""Partition sizes on disk, by DescribeLogDirs asked of every broker (all
topics): the size of a partition is its leader's copy, or, without a
live leader, the largest copy found."""

from __future__ import annotations

from pybroker.protocol.messages.describe_log_dirs_request import DescribeLogDirsRequest

from .client import AdminError, Client


def partition_sizes(client: Client) -> dict[tuple[str, int], int]:
    meta = client.metadata(None)
    leaders = {(t.name, p.partition_index): p.leader_id for t in meta.topics for p in t.partitions}
    sizes: dict[tuple[str, int], int] = {}
    for node in sorted(client.brokers):
        try:
            conn = client.broker(node)
            if not conn.supports(DescribeLogDirsRequest.API_KEY):
                continue
            response, _ = conn.call(DescribeLogDirsRequest(topics=None), 0, 4)
        except (AdminError, OSError):
            continue  # a broker that cannot be asked: its copies are not counted
        for result in response.results:
            if result.error_code:
                continue
            for t in result.topics:
                for p in t.partitions:
                    tp = (t.name, p.partition_index)
                    if p.is_future_key:
                        continue
                    if leaders.get(tp) == node or tp not in sizes:
                        sizes[tp] = p.partition_size
                    elif leaders.get(tp) not in client.brokers:
                        sizes[tp] = max(sizes[tp], p.partition_size)
    return sizes
