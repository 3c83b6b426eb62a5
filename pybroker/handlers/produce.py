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
failed, as Kafka does, so the client notices); acks=-1 waits until every
batch is committed (``until_committed``, Kafka's DelayedProduce): the
high watermark past it (a partition alone: at once, then the group fsync
unless the topic has write.caching; with followers: once every in-sync
replica has it, fsynced unless write.caching), for at most the request's
``timeout_ms`` (then REQUEST_TIMED_OUT). NOT_ENOUGH_REPLICAS refuses the
append when the ISR is below ``min.insync.replicas``;
NOT_ENOUGH_REPLICAS_AFTER_APPEND answers a batch committed after the ISR
fell below it; NOT_LEADER_OR_FOLLOWER one whose leader lost its
leadership while waiting.

A compressed batch is checked on the event loop for at most INLINE_SECONDS;
if that is not enough (a large batch, or a decompression bomb), the request
is held: the rest of its checks run in a worker thread, OFF_LOOP_CHECKS at
a time across the broker, while this connection reads no further request
and every other one carries on; then the request is handled as usual.

A partition this broker does not lead (a follower here, or not hosted
here while the topic exists: cluster mode) gets NOT_LEADER_OR_FOLLOWER,
an unknown one UNKNOWN_TOPIC_OR_PARTITION.

Failures are per partition, as in Kafka's ReplicaManager.appendToLocalLog:
a partition in an offline log directory, or whose append or fsync fails
(which takes its directory offline), gets KAFKA_STORAGE_ERROR; one deleted
while its fsync was pending gets UNKNOWN_TOPIC_OR_PARTITION; any other
exception is logged with its traceback and answered UNKNOWN_SERVER_ERROR.
The other partitions of the request are unaffected. The appends and their
commit (producer checks, min.insync.replicas, the fsync) are the replica
layer's: one ``until_committed`` covers every partition of the request.
"""

from __future__ import annotations

import logging
import struct
import time
import weakref
from typing import TYPE_CHECKING

import trio

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.produce_response import (
    BatchIndexAndErrorMessage,
    PartitionProduceResponse,
    ProduceResponse,
    TopicProduceResponse,
)
from pybroker.protocol.record_batch import ATTRIBUTES_OFFSET, HEADER_SIZE, MAGIC_OFFSET, TRANSACTIONAL_BIT
from pybroker.protocol.record_check import BatchCheck, RecordsRejected, Rules, produced_batch
from pybroker.protocol.registry import ApiKey

from . import CloseConnection, Hold, Later, handles

if TYPE_CHECKING:
    from ..replica import ReplicaManager
    from ..txn.coordinator import TransactionCoordinator

# Where a batch header holds its producer id and epoch.
PRODUCER_OFFSET = 43
PRODUCER = struct.Struct(">qh")
log = logging.getLogger("pybroker.produce")
MIN_SERVED_VERSION = 3
INLINE_SECONDS = 0.002
OFF_LOOP_CHECKS = 2
_limiters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _unexpected() -> KafkaError:
    """A check that failed by the broker's own fault (logged where it happened)."""
    return KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, "unexpected error on the broker")


@handles(ApiKey.PRODUCE, 0, 9)
def produce(
    ctx, req, checks=None, verified=None, *, replicas: ReplicaManager, txns: TransactionCoordinator, authorizer
):
    now = int(time.time() * 1000)
    version = ctx.api_version
    acks = req.acks
    denied = None if authorizer is None else _denied(ctx, req, authorizer, audit=checks is None)
    if checks is None:
        checks = _check_compressed(replicas, req, version, now)
        if any(isinstance(c, BatchCheck) and not c.done for c in checks.values()):
            return Hold(lambda: _finish_checks(ctx, req, checks, replicas, txns, authorizer))
    if verified is None:
        remote = _remote_verifications(req, replicas, txns)
        if remote:
            return Hold(lambda: _finish_verifications(ctx, req, checks, replicas, txns, remote, authorizer))
    failed = False
    appended = []  # (response, Appended) to wait for (acks=-1)
    topics = []
    for topic in req.topic_data:
        parts = []
        for pdata in topic.partition_data:
            resp = PartitionProduceResponse(index=pdata.index, base_offset=-1, log_append_time_ms=-1, log_start_offset=-1)
            try:
                if version < MIN_SERVED_VERSION:
                    raise KafkaError(ErrorCode.UNSUPPORTED_VERSION, "Produce v0-2 are not supported")
                if acks not in (0, 1, -1):
                    raise KafkaError(ErrorCode.INVALID_REQUIRED_ACKS)
                if denied and (denied is _ALL or topic.name in denied):
                    raise KafkaError(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED if denied is _ALL
                                     else ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                part = replicas.partition(topic.name, pdata.index)
                if part is None:
                    raise replicas.missing(topic.name, pdata.index)
                check = checks.get(id(pdata))
                if check is None:
                    check = _check(part, pdata.records, version, now, None)
                elif not isinstance(check, BatchCheck):
                    raise check
                if check.batch.is_transactional:
                    _verify(txns, req.transactional_id, part, check.batch, verified)
                check.apply()
                done = replicas.append(topic.name, pdata.index, check.batch, now=now, acks=acks)
                resp.base_offset = done.base_offset
                resp.log_append_time_ms = done.log_append_time
                resp.log_start_offset = done.log_start_offset
                if acks == -1:
                    appended.append((resp, done))
            except KafkaError as exc:
                failed = True
                _fail(resp, version, exc.code, exc.message)
            except RecordsRejected as exc:
                failed = True
                _fail(resp, version, exc.code, exc.message, _record_errors(exc))
            except Exception:
                log.exception("produce to %s-%d failed", topic.name, pdata.index)
                failed = True
                _fail(resp, version, ErrorCode.UNKNOWN_SERVER_ERROR, "unexpected error on the broker")
            parts.append(resp)
        topics.append(TopicProduceResponse(name=topic.name, partition_responses=parts))
    response = ProduceResponse(responses=topics)
    if acks == 0:
        if failed:
            raise CloseConnection("acks=0 produce failed")
        return None
    if acks == -1 and appended:

        async def committed():
            failures = await replicas.until_committed([done for _, done in appended], req.timeout_ms)
            if failures:
                for resp, done in appended:
                    exc = failures.get(done)
                    if exc is not None:
                        _fail(resp, version, exc.code, exc.message)
            return response

        return Later(committed)
    return response


_ALL = frozenset({None})  # every partition: the transactional id is not writable


def _denied(ctx, req, authorizer, audit: bool):
    """KafkaApis.handleProduceRequest's checks: WRITE on the transactional
    id (else every partition fails), then WRITE on each topic."""
    if req.transactional_id is not None and not authorizer.allowed(
        ctx, Operation.WRITE, ResourceType.TRANSACTIONAL_ID, req.transactional_id, audit
    ):
        return _ALL
    names = {t.name for t in req.topic_data}
    return names - authorizer.allowed_names(ctx, Operation.WRITE, ResourceType.TOPIC, names, audit)


def _fail(resp, version: int, code: ErrorCode, message: str | None, record_errors=None) -> None:
    resp.error_code = code
    if version >= 8:
        resp.error_message = message
        resp.record_errors = record_errors or []


def _record_errors(exc: RecordsRejected) -> list:
    return [BatchIndexAndErrorMessage(batch_index=i, batch_index_error_message=m) for i, m in exc.record_errors]


def _check(part, records, version: int, now: int, deadline: float | None) -> BatchCheck:
    """Kafka's checks of the partition's batch, run until done or past
    ``deadline``; raises RecordsRejected or KafkaError if it is refused."""
    config = part.config
    rules = Rules(
        f"{part.topic}-{part.index}",
        max_message_bytes=config.max_message_bytes,
        compact=config.compact,
        log_append_time=config.log_append_time,
        before_max_ms=config.timestamp_before_max_ms,
        after_max_ms=config.timestamp_after_max_ms,
        now=now,
    )
    check = BatchCheck(produced_batch(records, version), rules)
    check.run(deadline)
    return check


def _fresh(exc: RecordsRejected | KafkaError) -> RecordsRejected | KafkaError:
    """The refusal again, without the traceback whose frames hold the
    decompression buffers until the cycle collector runs."""
    if isinstance(exc, RecordsRejected):
        return RecordsRejected(exc.code, exc.message, exc.record_errors)
    return KafkaError(exc.code, exc.message)


def _check_compressed(replicas, req, version: int, now: int) -> dict:
    """Start the checks of the request's compressed batches, each for at most
    INLINE_SECONDS: {id(partition data): BatchCheck or the refusal}. The
    other batches are checked as they are appended."""
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
            part = replicas.partition(topic.name, pdata.index)
            if part is None:
                continue
            try:
                checks[id(pdata)] = _check(part, records, version, now, time.perf_counter() + INLINE_SECONDS)
            except (RecordsRejected, KafkaError) as exc:
                checks[id(pdata)] = _fresh(exc)
            except Exception:
                log.exception("checking the batch for %s-%d failed", topic.name, pdata.index)
                checks[id(pdata)] = _unexpected()
    return checks


def _verify(txns, txn_id: str | None, part, batch, verified: dict | None) -> None:
    """A transactional batch needs a transactional id (Kafka authorizes
    it), and its partition must be in the producer's transaction before
    the first batch of the transaction lands there (KIP-890): asked of the
    coordinator here, or already asked of another broker (``verified``)."""
    if txn_id is None:
        raise KafkaError(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactional records need a transactional id")
    if part.log.producers.ongoing.get(batch.producer_id) is not None:
        return
    tp = (part.topic, part.index)
    if verified is not None and tp in verified:
        error = verified[tp]
    else:
        error = txns.verify_here(txn_id, batch.producer_id, batch.producer_epoch, tp)
    if error:
        raise KafkaError(error, f"{part.topic}-{part.index} is not in the transaction of {txn_id!r}")


def _remote_verifications(req, replicas, txns) -> dict:
    """{(producer id, epoch): [partitions]} whose first transactional batch
    here must be verified by a coordinator on another broker."""
    txn_id = req.transactional_id
    if txn_id is None or not txns.verifies_elsewhere(txn_id):
        return {}
    wanted: dict[tuple[int, int], list] = {}
    for topic in req.topic_data:
        for pdata in topic.partition_data:
            records = pdata.records
            if records is None or len(records) < HEADER_SIZE or not records[ATTRIBUTES_OFFSET + 1] & TRANSACTIONAL_BIT:
                continue
            part = replicas.partition(topic.name, pdata.index)
            pid, epoch = PRODUCER.unpack_from(records, PRODUCER_OFFSET)
            if part is None or part.log.producers.ongoing.get(pid) is not None:
                continue
            wanted.setdefault((pid, epoch), []).append((topic.name, pdata.index))
    return wanted


async def _finish_verifications(ctx, req, checks: dict, replicas, txns, remote: dict, authorizer):
    """Ask the coordinator, then the request itself (the connection waits)."""
    verified: dict = {}
    for (pid, epoch), tps in remote.items():
        verified.update(await txns.verify_remote(req.transactional_id, pid, epoch, tps))
    return produce(ctx, req, checks, verified, replicas=replicas, txns=txns, authorizer=authorizer)


async def _finish_checks(ctx, req, checks: dict, replicas, txns, authorizer):
    """The rest of the checks in worker threads, then the request itself."""
    limiter = _limiters.get(replicas)
    if limiter is None:
        limiter = _limiters[replicas] = trio.CapacityLimiter(OFF_LOOP_CHECKS)
    for key, check in checks.items():
        if isinstance(check, BatchCheck) and not check.done:
            refusal = await trio.to_thread.run_sync(_run_to_end, check, limiter=limiter)
            if refusal is not None:
                checks[key] = refusal
    verified = {}
    for (pid, epoch), tps in _remote_verifications(req, replicas, txns).items():
        verified.update(await txns.verify_remote(req.transactional_id, pid, epoch, tps))
    return produce(ctx, req, checks, verified, replicas=replicas, txns=txns, authorizer=authorizer)


def _run_to_end(check: BatchCheck) -> RecordsRejected | KafkaError | None:
    """In a worker thread: the rest of a check. A refusal is returned, not
    raised: an exception crossing to the loop stays referenced by the idle
    worker, and with it the frames and buffers of the check."""
    try:
        check.run()
    except RecordsRejected as exc:
        return _fresh(exc)
    except Exception:
        log.exception("checking the batch for %s failed", check.rules.where)
        return _unexpected()
    return None
