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

import os
from collections import defaultdict

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.describe_log_dirs_response import (
    DescribeLogDirsPartition,
    DescribeLogDirsResponse,
    DescribeLogDirsResult,
    DescribeLogDirsTopic,
)
from pybroker.protocol.registry import ApiKey

from . import handles


@handles(ApiKey.DESCRIBE_LOG_DIRS, 1, 4)
def describe_log_dirs(ctx, req):
    wanted = None if req.topics is None else {(t.topic, p) for t in req.topics for p in t.partitions}
    by_dir: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for (topic, index), plog in ctx.broker.logs.logs.items():
        if wanted is None or (topic, index) in wanted:
            by_dir[os.path.abspath(plog.directory.parent)][topic].append((index, plog))
    results = []
    for d in ctx.broker.config.log_dirs:
        path = os.path.abspath(d)
        result = DescribeLogDirsResult(error_code=ErrorCode.NONE, log_dir=path)
        if ctx.broker.logs.dir_failure(d) is not None:
            result.error_code = ErrorCode.KAFKA_STORAGE_ERROR
            results.append(result)
            continue
        try:
            st = os.statvfs(path)
        except OSError:
            result.error_code = ErrorCode.KAFKA_STORAGE_ERROR
            results.append(result)
            continue
        if ctx.api_version >= 4:
            result.total_bytes = st.f_blocks * st.f_frsize
            result.usable_bytes = st.f_bavail * st.f_frsize
        result.topics = [
            DescribeLogDirsTopic(
                name=topic,
                partitions=[
                    DescribeLogDirsPartition(
                        partition_index=index,
                        partition_size=plog.size_in_bytes,
                        offset_lag=max(plog.high_watermark - plog.log_end_offset, 0),
                        is_future_key=False,
                    )
                    for index, plog in sorted(parts, key=lambda x: x[0])
                ],
            )
            for topic, parts in sorted(by_dir.get(path, {}).items())
        ]
        results.append(result)
    return DescribeLogDirsResponse(results=results)
