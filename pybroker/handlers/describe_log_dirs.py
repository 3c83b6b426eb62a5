"""DescribeLogDirs v1-4 (api key 35).

For each configured log directory (as an absolute path): the partitions
it holds, with their size on disk. v1 is v0 (throttling; our minimum, as
Kafka 4's); v2 is flexible; v3 adds a top-level error code; v4 the total
and usable bytes of the directory's volume. A null topic list means every
partition; otherwise only those asked for, and a topic with none of them
left is not listed (apache/kafka ReplicaManager ``describeLogDirs``). The
offset lag is the high watermark minus the log end, never below 0: always
0 on a single node; there are no future logs. A directory that has
failed (is offline) or cannot be read gets KAFKA_STORAGE_ERROR and no
partitions, as Kafka reports an offline log dir.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pybroker.acl import Operation
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.describe_log_dirs_response import (
    DescribeLogDirsPartition,
    DescribeLogDirsResponse,
    DescribeLogDirsResult,
    DescribeLogDirsTopic,
)
from pybroker.protocol.registry import ApiKey

from . import handles

if TYPE_CHECKING:
    from ..config import BrokerConfig
    from ..replica import ReplicaManager


@handles(ApiKey.DESCRIBE_LOG_DIRS, 1, 4)
def describe_log_dirs(ctx, req, *, replicas: ReplicaManager, config: BrokerConfig, authorizer):
    if authorizer is not None and not authorizer.cluster(ctx, Operation.DESCRIBE):
        return DescribeLogDirsResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, results=[])
    wanted = None if req.topics is None else {(t.topic, p) for t in req.topics for p in t.partitions}
    results = []
    for d in replicas.describe_log_dirs(config.log_dirs, wanted):
        result = DescribeLogDirsResult(error_code=d.error, log_dir=d.path)
        results.append(result)
        if d.error != ErrorCode.NONE:
            continue
        if ctx.api_version >= 4:
            result.total_bytes = d.total_bytes
            result.usable_bytes = d.usable_bytes
        by_topic: dict[str, list] = {}
        for part in d.partitions:
            by_topic.setdefault(part.topic, []).append(part)
        result.topics = [
            DescribeLogDirsTopic(
                name=topic,
                partitions=[
                    DescribeLogDirsPartition(
                        partition_index=part.index,
                        partition_size=part.size_in_bytes,
                        offset_lag=part.offset_lag,
                        is_future_key=False,
                    )
                    for part in sorted(parts, key=lambda x: x.index)
                ],
            )
            for topic, parts in sorted(by_topic.items())
        ]
    return DescribeLogDirsResponse(results=results)
