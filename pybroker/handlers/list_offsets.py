"""ListOffsets v1-7 (api key 2).

Special timestamps: -1 latest (the high watermark for consumers, the last
stable offset for read_committed, the log end for a debug replica id -2),
-2 earliest (the log start), -3 the record with the largest timestamp (v7,
KIP-734). Any other timestamp finds the first record at or after it, or
-1/-1 when there is none. v2 isolation level; v4 leader epochs in and out
(FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH); v6 flexible. A partition
listed twice gets INVALID_REQUEST, as with Kafka. A partition in an
offline log directory (or whose read fails) gets KAFKA_STORAGE_ERROR; any
other exception is logged and answered UNKNOWN_SERVER_ERROR; the other
partitions are answered as usual.
"""

import logging

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.list_offsets_response import (
    ListOffsetsPartitionResponse,
    ListOffsetsResponse,
    ListOffsetsTopicResponse,
)
from pybroker.protocol.registry import ApiKey
from pybroker.storage.log import KafkaStorageError

from . import handles

logger = logging.getLogger("pybroker.list_offsets")
LATEST, EARLIEST, MAX_TIMESTAMP = -1, -2, -3
DEBUG_REPLICA = -2
READ_COMMITTED = 1


@handles(ApiKey.LIST_OFFSETS, 1, 7)
def list_offsets(ctx, req):
    broker = ctx.broker
    seen: dict[tuple[str, int], int] = {}
    for t in req.topics:
        for p in t.partitions:
            seen[(t.name, p.partition_index)] = seen.get((t.name, p.partition_index), 0) + 1
    topics = []
    for t in req.topics:
        parts = []
        for p in t.partitions:
            resp = ListOffsetsPartitionResponse(partition_index=p.partition_index, timestamp=-1, offset=-1, leader_epoch=-1)
            if seen[(t.name, p.partition_index)] > 1:
                resp.error_code = ErrorCode.INVALID_REQUEST
            else:
                try:
                    _answer(broker, req, t.name, p, resp, ctx.api_version)
                except KafkaStorageError:
                    _failed(resp, ErrorCode.KAFKA_STORAGE_ERROR)
                except Exception:
                    logger.exception("list offsets of %s-%d failed", t.name, p.partition_index)
                    _failed(resp, ErrorCode.UNKNOWN_SERVER_ERROR)
            parts.append(resp)
        topics.append(ListOffsetsTopicResponse(name=t.name, partitions=parts))
    return ListOffsetsResponse(topics=topics)


def _failed(resp, code: ErrorCode) -> None:
    resp.error_code = code
    resp.timestamp = resp.offset = resp.leader_epoch = -1


def _answer(broker, req, topic, p, resp, version: int) -> None:
    part = broker.partition(topic, p.partition_index)
    if part is None:
        resp.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        return
    part.check_online()
    if p.current_leader_epoch >= 0 and p.current_leader_epoch != part.leader_epoch:
        resp.error_code = (
            ErrorCode.FENCED_LEADER_EPOCH if p.current_leader_epoch < part.leader_epoch else ErrorCode.UNKNOWN_LEADER_EPOCH
        )
        return
    log = part.log
    ts = p.timestamp
    if ts == LATEST:
        offset = log.log_end_offset if req.replica_id == DEBUG_REPLICA else log.high_watermark
        found = (-1, offset)
    elif ts == EARLIEST:
        found = (-1, log.log_start_offset)
    elif ts == MAX_TIMESTAMP:
        found = log.max_timestamp()
    elif ts < 0:
        resp.error_code = ErrorCode.INVALID_REQUEST
        return
    else:
        found = log.offset_for_timestamp(ts) or (-1, -1)
        if found[1] >= log.high_watermark:
            found = (-1, -1)
    resp.timestamp, resp.offset = found
    if resp.offset >= 0 and version >= 4:
        epoch = log.epochs.epoch_for_offset(resp.offset)
        resp.leader_epoch = part.leader_epoch if epoch is None else epoch
