"""Produce v0-9 (api key 0); v3-9 served, v0-2 answered UNSUPPORTED_VERSION.

Kafka 4 advertises Produce from v0 although it serves v3+ only: librdkafka
up to 2.11.0 (kcat from distributions) turns compression off unless the
range includes v0 (KAFKA-18659). We do the same.

Per version: v3 transactional id and magic-2 batches; v5 log start offset
in the response; v7 zstd allowed; v8 record_errors and error_message; v9
flexible. Each partition must carry exactly one batch (Kafka's rule for
v3+). The batch is checked once, as Kafka checks it (protocol/record_check.py:
header, CRC32C, every record, compressed ones decompressed in a bounded
window), then its offsets are assigned in place and its bytes appended as
they came. acks=0 gets no response (the connection is closed if anything
failed, as Kafka does, so the client notices); acks=-1 waits for the fsync
of every log it wrote (group commit) unless the topic has write.caching.

A compressed batch is checked on the event loop for at most INLINE_SECONDS;
if that is not enough (a large batch, or a decompression bomb), the request
is held: the rest of its checks run in a worker thread, OFF_LOOP_CHECKS at
a time across the broker, while this connection reads no further request
and every other one carries on; then the request is handled as usual.

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
import weakref

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.produce_response import (
    BatchIndexAndErrorMessage,
    PartitionProduceResponse,
    ProduceResponse,
    TopicProduceResponse,
)
from pybroker.protocol.record_batch import ATTRIBUTES_OFFSET, MAGIC_OFFSET
from pybroker.protocol.record_check import BatchCheck, RecordsRejected, Rules, produced_batch
from pybroker.protocol.registry import ApiKey
from pybroker.storage.log import KafkaStorageError

from ..producers import BatchMeta, DuplicateBatch, SequenceError
from . import CloseConnection, Hold, Later, handles

log = logging.getLogger("pybroker.produce")
MIN_SERVED_VERSION = 3
INLINE_SECONDS = 0.002
OFF_LOOP_CHECKS = 2
_limiters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Reject(Exception):
    def __init__(self, code: ErrorCode, message: str | None = None, record_errors=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.record_errors = record_errors or []



def _unexpected() -> _Reject:
    """A check that failed by the broker's own fault (logged where it happened)."""
    return _Reject(ErrorCode.UNKNOWN_SERVER_ERROR, "unexpected error on the broker")


@handles(ApiKey.PRODUCE, 0, 9)
def produce(ctx, req, checks=None):
    broker = ctx.broker
    now = int(time.time() * 1000)
    version = ctx.api_version
    if checks is None:
        checks = _check_compressed(broker, req, version, now)
        if any(isinstance(c, BatchCheck) and not c.done for c in checks.values()):
            return Hold(lambda: _finish_checks(ctx, req, checks))
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
                base, append_time = _append(broker, part, pdata.records, version, now, checks.get(id(pdata)))
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


def _append(broker, part, records, version: int, now: int, check=None) -> tuple[int, int]:
    if check is None:
        check = _check(part, records, version, now, None)
    elif isinstance(check, _Reject):
        raise check
    batch = check.batch
    check.apply()
    producers = None
    if batch.producer_id >= 0:
        producers = broker.producers.for_partition(part.topic, part.index)
        try:
            producers.check(batch.producer_id, batch.producer_epoch, batch.base_sequence, batch.last_sequence)
        except DuplicateBatch as dup:
            return dup.meta.base_offset, -1
        except SequenceError as exc:
            raise _Reject(exc.code, str(exc)) from None
    result = part.append_batches([batch], now)
    if producers is not None:
        producers.update(
            batch.producer_id,
            batch.producer_epoch,
            BatchMeta(batch.base_sequence, batch.last_sequence, result.base_offset, result.last_offset, batch.max_timestamp),
            now,
        )
    return result.base_offset, result.log_append_time


def _check(part, records, version: int, now: int, deadline: float | None) -> BatchCheck:
    """Kafka's checks of the partition's batch, run until done or past
    ``deadline``; _Reject if it is refused."""
    config = part.log.config
    rules = Rules(
        f"{part.topic}-{part.index}",
        max_message_bytes=config.max_message_bytes,
        compact=config.compact,
        log_append_time=config.log_append_time,
        before_max_ms=config.timestamp_before_max_ms,
        after_max_ms=config.timestamp_after_max_ms,
        now=now,
    )
    try:
        check = BatchCheck(produced_batch(records, version), rules)
        if check.batch.is_transactional:
            raise _Reject(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactions are not supported yet")
        check.run(deadline)
    except RecordsRejected as exc:
        raise _rejected(exc) from None
    return check


def _rejected(exc: RecordsRejected) -> _Reject:
    return _Reject(
        exc.code,
        exc.message,
        [BatchIndexAndErrorMessage(batch_index=i, batch_index_error_message=m) for i, m in exc.record_errors],
    )


def _check_compressed(broker, req, version: int, now: int) -> dict:
    """Start the checks of the request's compressed batches, each for at most
    INLINE_SECONDS: {id(partition data): BatchCheck or _Reject}. The other
    batches are checked as they are appended."""
    checks = {}
    if version < MIN_SERVED_VERSION or req.acks not in (0, 1, -1):
        return checks
    for topic in req.topic_data:
        for pdata in topic.partition_data:
            records = pdata.records
            if records is None or len(records) <= ATTRIBUTES_OFFSET + 1 or records[MAGIC_OFFSET] != 2:
                continue
            if not records[ATTRIBUTES_OFFSET + 1] & 0x07:
                continue
            part = broker.partition(topic.name, pdata.index)
            if part is None:
                continue
            try:
                checks[id(pdata)] = _check(part, records, version, now, time.perf_counter() + INLINE_SECONDS)
            except _Reject as rej:
                # Kept without its traceback, whose frames hold the
                # decompression buffers until the cycle collector runs.
                checks[id(pdata)] = _Reject(rej.code, rej.message, rej.record_errors)
            except Exception:
                log.exception("checking the batch for %s-%d failed", topic.name, pdata.index)
                checks[id(pdata)] = _unexpected()
    return checks


async def _finish_checks(ctx, req, checks: dict):
    """The rest of the checks in worker threads, then the request itself."""
    broker = ctx.broker
    limiter = _limiters.get(broker)
    if limiter is None:
        limiter = _limiters[broker] = trio.CapacityLimiter(OFF_LOOP_CHECKS)
    for key, check in checks.items():
        if isinstance(check, BatchCheck) and not check.done:
            refusal = await trio.to_thread.run_sync(_run_to_end, check, limiter=limiter)
            if refusal is not None:
                checks[key] = refusal
    return produce(ctx, req, checks)


def _run_to_end(check: BatchCheck) -> _Reject | None:
    """In a worker thread: the rest of a check. A refusal is returned, not
    raised: an exception crossing to the loop stays referenced by the idle
    worker, and with it the frames and buffers of the check."""
    try:
        check.run()
    except RecordsRejected as exc:
        return _rejected(exc)
    except Exception:
        log.exception("checking the batch for %s failed", check.rules.where)
        return _unexpected()
    return None
