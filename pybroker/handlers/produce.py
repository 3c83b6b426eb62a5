"""Produce v0-9 (api key 0); v3-9 served, v0-2 answered UNSUPPORTED_VERSION.

Kafka 4 advertises Produce from v0 although it serves v3+ only: librdkafka
up to 2.11.0 (kcat from distributions) turns compression off unless the
range includes v0 (KAFKA-18659). We do the same.

Per version: v3 transactional id and magic-2 batches; v5 log start offset
in the response; v7 zstd allowed; v8 record_errors and error_message; v9
flexible. Each partition must carry exactly one batch (Kafka's rule for
v3+). The batch is checked once — header, lengths, CRC32C, timestamps per
batch — then its offsets are assigned in place and its bytes appended as
they came. acks=0 gets no response (the connection is closed if anything
failed, as Kafka does, so the client notices); acks=-1 waits for the fsync
of every log it wrote (group commit) unless the topic has write.caching.

Failures are per partition, as in Kafka's ReplicaManager.appendToLocalLog:
a partition in an offline log directory, or whose append or fsync fails
(which takes its directory offline), gets KAFKA_STORAGE_ERROR; one deleted
while its fsync was pending gets UNKNOWN_TOPIC_OR_PARTITION; any other
exception is logged with its traceback and answered UNKNOWN_SERVER_ERROR.
The other partitions of the request are unaffected.
"""

from __future__ import annotations

import logging
import time

from protocol.compression import Compression
from protocol.error_codes import ErrorCode
from protocol.errors import ProtocolError
from protocol.messages.produce_response import (
    BatchIndexAndErrorMessage,
    PartitionProduceResponse,
    ProduceResponse,
    TopicProduceResponse,
)
from protocol.record_batch import LOG_APPEND_TIME, RecordBatch, iter_batches
from protocol.registry import ApiKey
from storage.log import KafkaStorageError

from ..producers import BatchMeta, DuplicateBatch, SequenceError
from . import CloseConnection, Later, handles

log = logging.getLogger("pybroker.produce")
MIN_SERVED_VERSION = 3


class _Reject(Exception):
    def __init__(self, code: ErrorCode, message: str | None = None, record_errors=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.record_errors = record_errors or []


@handles(ApiKey.PRODUCE, 0, 9)
def produce(ctx, req):
    broker = ctx.broker
    now = int(time.time() * 1000)
    version = ctx.api_version
    failed = False
    written = []
    topics = []
    for topic in req.topic_data:
        parts = []
        for pdata in topic.partition_data:
            resp = PartitionProduceResponse(index=pdata.index, base_offset=-1, log_append_time_ms=-1, log_start_offset=-1)
            try:
                if version < MIN_SERVED_VERSION:
                    raise _Reject(ErrorCode.UNSUPPORTED_VERSION, "Produce v0-2 are not supported")
                if req.acks not in (0, 1, -1):
                    raise _Reject(ErrorCode.INVALID_REQUIRED_ACKS)
                part = broker.partition(topic.name, pdata.index)
                if part is None:
                    raise _Reject(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
                base, append_time = _append(broker, part, pdata.records, version, now)
                resp.base_offset = base
                resp.log_append_time_ms = append_time
                resp.log_start_offset = part.log.log_start_offset
                if not part.log.config.write_caching:
                    written.append((resp, part))
            except _Reject as rej:
                failed = True
                _fail(resp, version, rej.code, rej.message, rej.record_errors)
            except KafkaStorageError as exc:
                failed = True
                _fail(resp, version, ErrorCode.KAFKA_STORAGE_ERROR, str(exc))
            except Exception:
                log.exception("produce to %s-%d failed", topic.name, pdata.index)
                failed = True
                _fail(resp, version, ErrorCode.UNKNOWN_SERVER_ERROR, "unexpected error on the broker")
            parts.append(resp)
        topics.append(TopicProduceResponse(name=topic.name, partition_responses=parts))
    response = ProduceResponse(responses=topics)
    if req.acks == 0:
        if failed:
            raise CloseConnection("acks=0 produce failed")
        return None
    if req.acks == -1 and written:

        async def durable():
            failures = await broker.flusher.flush([part.log for _, part in written])
            for resp, part in written:
                if broker.partition(part.topic, part.index) is not part:
                    # Deleted before its fsync: Kafka's DelayedProduce finds no partition.
                    _fail(resp, version, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "the partition was deleted")
                elif part.log in failures:
                    _fail(resp, version, ErrorCode.KAFKA_STORAGE_ERROR, failures[part.log])
            return response

        return Later(durable)
    return response


def _fail(resp, version: int, code: ErrorCode, message: str | None, record_errors=None) -> None:
    resp.error_code = code
    if version >= 8:
        resp.error_message = message
        resp.record_errors = record_errors or []


def _append(broker, part, records, version: int, now: int) -> tuple[int, int]:
    if records is None or len(records) == 0:
        raise _Reject(ErrorCode.CORRUPT_MESSAGE, "no record batch")
    config = part.log.config
    try:
        batches = list(iter_batches(records))
    except ProtocolError as exc:
        raise _Reject(ErrorCode.CORRUPT_MESSAGE, str(exc)) from None
    if len(batches) != 1:
        raise _Reject(ErrorCode.INVALID_RECORD, "Produce v3+ requests must carry exactly one record batch per partition")
    batch: RecordBatch = batches[0]
    if batch.size_in_bytes > config.max_message_bytes:
        raise _Reject(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"batch of {batch.size_in_bytes} bytes exceeds max.message.bytes {config.max_message_bytes}",
        )
    try:
        batch.validate()
    except ProtocolError as exc:
        raise _Reject(ErrorCode.CORRUPT_MESSAGE, str(exc)) from None
    if batch.max_timestamp < batch.base_timestamp and not config.log_append_time:
        # Some clients (sarama 1.22) leave the header's max timestamp at -1.
        # Kafka derives it from the records and rewrites the header; only
        # such batches pay for the per-record pass.
        try:
            batch.set_max_timestamp(max(r.timestamp for r in batch.records()))
        except ProtocolError as exc:
            raise _Reject(ErrorCode.CORRUPT_MESSAGE, str(exc)) from None
    _check_batch(batch, config, version, now)
    producers = None
    if batch.producer_id >= 0:
        producers = broker.producers.for_partition(part.topic, part.index)
        try:
            producers.check(batch.producer_id, batch.producer_epoch, batch.base_sequence, batch.last_sequence)
        except DuplicateBatch as dup:
            return dup.meta.base_offset, -1
        except SequenceError as exc:
            raise _Reject(exc.code, str(exc)) from None
    result = part.append_batches(batches, now)
    if producers is not None:
        producers.update(
            batch.producer_id,
            batch.producer_epoch,
            BatchMeta(batch.base_sequence, batch.last_sequence, result.base_offset, result.last_offset, batch.max_timestamp),
            now,
        )
    return result.base_offset, result.log_append_time


def _check_batch(batch: RecordBatch, config, version: int, now: int) -> None:
    if batch.is_control:
        raise _Reject(ErrorCode.INVALID_RECORD, "clients may not produce control batches")
    if batch.record_count != batch.last_offset_delta + 1 or batch.record_count == 0:
        raise _Reject(ErrorCode.INVALID_RECORD, "record count does not match the last offset delta")
    if version < 7 and batch.compression == Compression.ZSTD:
        raise _Reject(ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, "zstd needs Produce v7 or later")
    if batch.is_transactional:
        raise _Reject(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactions are not supported yet")
    if config.compact:
        for n, record in enumerate(batch.records()):
            if record.key is None:
                raise _Reject(
                    ErrorCode.INVALID_RECORD,
                    "Compacted topic cannot accept message without key",
                    [BatchIndexAndErrorMessage(batch_index=n, batch_index_error_message="Compacted topic cannot accept message without key")],
                )
    if config.log_append_time or batch.timestamp_type == LOG_APPEND_TIME:
        return
    # Per batch, not per record: the first record's timestamp (base) and the
    # largest bound the batch's range.
    if now - batch.base_timestamp > config.timestamp_before_max_ms or batch.max_timestamp - now > config.timestamp_after_max_ms:
        raise _Reject(
            ErrorCode.INVALID_TIMESTAMP,
            f"batch timestamps {batch.base_timestamp}..{batch.max_timestamp} are outside the allowed range around {now}",
        )
