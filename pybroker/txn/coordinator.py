"""The transaction coordinator: Trio glue around the rules of ``state.py``.

A transactional id lives in partition abs(hash(id)) % N of
``__transaction_state`` (Kafka's hash, as for groups), made on first use
with ``transaction.state.log.*``; its coordinator is the leader of that
partition, whose leader epoch is the coordinator epoch the markers carry.
Every state change is one record (TransactionLogKey/Value, ``records.py``)
appended through the replica layer with acks=-1 and applied, and
answered, only once committed (``GroupWriter`` over this topic).

EndTxn answers once PrepareCommit/PrepareAbort is committed; the markers
then go to every partition of the transaction (``markers``), retried
until each is written or its partition is gone, and the transaction ends
with CompleteCommit/CompleteAbort. A marker written to a partition of
``__consumer_offsets`` also tells the group coordinator, which applies or
drops the transaction's offsets. A coordinator that takes over a
partition (at start, or on gaining its leadership) loads it and finishes
every transaction it finds prepared.

A timer aborts transactions open longer than their timeout (fencing the
producer with a bumped epoch, as Kafka does) every
``transaction.abort.timed.out.transaction.cleanup.interval.ms``, and
tombstones ids idle for ``transactional.id.expiration.ms``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError, ProtocolError
from pybroker.protocol.messages.add_partitions_to_txn_request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
    AddPartitionsToTxnTransaction,
)
from pybroker.protocol.records import NewRecord, split_batches

from ..groups import now_ms, partition_for
from ..groups.writes import GroupWriter
from ..replica.link import LinkError
from . import state as st
from .markers import Markers
from .records import TxnLogValue, decode_key, decode_value, encode_key, encode_value
from .state import Txn, TxnState

log = logging.getLogger("pybroker.txn")

TXN_TOPIC = "__transaction_state"
TRACE_LEVEL = logging.DEBUG  # each request's decision
LOADING, ACTIVE = "loading", "active"
LOAD_CHUNK = 1 << 20
# Kafka's TransactionStateManager maps its append errors so: the client
# retries the first kind elsewhere, the second after rediscovery.
WRITE_ERRORS = {
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.REQUEST_TIMED_OUT: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_LEADER_OR_FOLLOWER: ErrorCode.NOT_COORDINATOR,
    ErrorCode.KAFKA_STORAGE_ERROR: ErrorCode.NOT_COORDINATOR,
    ErrorCode.MESSAGE_TOO_LARGE: ErrorCode.UNKNOWN_SERVER_ERROR,
    ErrorCode.RECORD_LIST_TOO_LARGE: ErrorCode.UNKNOWN_SERVER_ERROR,
}


class TransactionCoordinator:
    """The transactional ids of the partitions of __transaction_state this
    broker leads. Built from ``config``, ``replicas`` (append and complete;
    ``partition`` to load), ``metadata`` (read only), ``create_topic``,
    ``producer_ids`` and ``groups`` (told of markers on its topic)."""

    def __init__(self, config, replicas, metadata, create_topic: Callable[..., Any], producer_ids, groups,
                 cluster: bool = False, links=None):
        self.config = config
        self.replicas = replicas
        self.metadata = metadata
        self.create_topic = create_topic
        self.producer_ids = producer_ids
        self.cluster = cluster
        self.txns: dict[str, Txn] = {}
        self.partitions: dict[int, str] = {}
        self.resigned: set[int] = set()
        info = metadata.topic(TXN_TOPIC)
        self.num_partitions = len(info.partitions) if info else config["transaction.state.log.num.partitions"]
        self.writer = GroupWriter(replicas, self._writable_partition, config["offsets.commit.timeout.ms"], TXN_TOPIC)
        self.markers = Markers(replicas, metadata, groups, links)
        self.max_timeout_ms = config["transaction.max.timeout.ms"]
        self._unfinished: list[Txn] = []  # prepared when loaded: finished once running
        self._nursery: trio.Nursery | None = None

    # -- where ids live ------------------------------------------------------------

    def partition_index(self, txn_id: str) -> int:
        return partition_for(txn_id, self.num_partitions)

    def ensure_topic(self) -> None:
        if self.metadata.topic(TXN_TOPIC) is None:
            config = self.config
            self.create_topic(TXN_TOPIC, self.num_partitions, {
                "cleanup.policy": "compact",
                "compression.type": "uncompressed",
                "min.insync.replicas": str(config["transaction.state.log.min.isr"]),
                "segment.bytes": str(config["transaction.state.log.segment.bytes"]),
                "unclean.leader.election.enable": "false",
            })
            if not self.cluster:
                for index in range(self.num_partitions):
                    self.partitions[index] = ACTIVE  # new and empty

    def coordinator_for(self, txn_id: str):
        self.ensure_topic()
        if not self.cluster:
            return self.metadata.this_broker
        info = self.metadata.topic(TXN_TOPIC)
        if info is None:
            return None
        leader = info.partitions[partition_for(txn_id, len(info.partitions))].leader
        return self.metadata.broker(leader) if leader >= 0 else None

    def status(self, txn_id: str) -> ErrorCode:
        """NONE when this broker serves ``txn_id`` now, else
        COORDINATOR_LOAD_IN_PROGRESS or NOT_COORDINATOR."""
        if self.metadata.topic(TXN_TOPIC) is None:
            return ErrorCode.NOT_COORDINATOR
        index = self.partition_index(txn_id)
        state = self.partitions.get(index)
        if (
            state is None
            and not self.cluster
            and index not in self.resigned
            and self.replicas.partition(TXN_TOPIC, index) is not None
        ):
            self.load_partition(index, now_ms())  # made by an admin's CreateTopics since we loaded
            state = ACTIVE
        if state == ACTIVE:
            return ErrorCode.NONE
        return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS if state == LOADING else ErrorCode.NOT_COORDINATOR

    def coordinator_epoch(self, txn_id: str) -> int:
        part = self.replicas.partition(TXN_TOPIC, self.partition_index(txn_id))
        return max(part.info.leader_epoch, 0) if part is not None else 0

    def _writable_partition(self, txn_id: str) -> int:
        return self.partition_index(txn_id)

    # -- loading -------------------------------------------------------------------

    def load(self, now: int) -> int:
        """Load every partition of the topic this broker has (at start); how many ids."""
        info = self.metadata.topic(TXN_TOPIC)
        for p in info.partitions if info is not None else ():
            if self.replicas.partition(TXN_TOPIC, p.index) is not None:
                self.load_partition(p.index, now)
        return len(self.txns)

    def load_partition(self, index: int, now: int) -> None:
        """Read one partition to its log end (the latest record of each id
        wins); prepared transactions are finished once the coordinator runs."""
        self.partitions[index] = LOADING
        self.resigned.discard(index)
        part = self.replicas.partition(TXN_TOPIC, index)
        found: dict[str, TxnLogValue | None] = {}
        if part is not None:
            _read_partition(part, found)
        for txn_id, value in found.items():
            if value is None or value.state == TxnState.DEAD:
                self.txns.pop(txn_id, None)
                continue
            try:
                state = TxnState(value.state)
            except ValueError:
                log.error("transactional id %r has unknown state %d: not loaded", txn_id, value.state)
                continue
            parts = frozenset((t, i) for t, ids in (value.partitions or {}).items() for i in ids)
            txn = Txn(txn_id, value.producer_id, value.previous_producer_id, value.producer_epoch, st.NO_EPOCH,
                      value.timeout_ms, state, parts, value.start_ms, value.last_update_ms)
            self.txns[txn_id] = txn
            if state in st.PREPARING:
                self._unfinished.append(txn)
        self.partitions[index] = ACTIVE
        if self._nursery is not None:
            self._finish_unfinished()

    def unload_partition(self, index: int) -> None:
        self.partitions.pop(index, None)
        self.resigned.add(index)
        for txn_id in [t for t in self.txns if self.partition_index(t) == index]:
            del self.txns[txn_id]

    # -- operations ----------------------------------------------------------------

    async def init_producer_id(self, txn_id: str, timeout_ms: int, producer_id: int, epoch: int):
        """(error, producer id, epoch) for InitProducerId with a transactional id."""
        error = self.status(txn_id)
        if error:
            return error, -1, -1
        if timeout_ms <= 0 or timeout_ms > self.max_timeout_ms:
            return ErrorCode.INVALID_TRANSACTION_TIMEOUT, -1, -1
        now = now_ms()
        txn = self.txns.get(txn_id)
        if txn is None:
            pid = await self._new_producer_id()
            txn = self.txns.get(txn_id)  # another request may have made it meanwhile
            if txn is None:
                txn = self.txns[txn_id] = st.new_txn(txn_id, pid, timeout_ms, now)
        fresh = await self._new_producer_id() if st.epoch_exhausted(txn.epoch) else None
        decision = st.init_producer_id(txn, timeout_ms, producer_id, epoch, lambda: fresh, now)
        _trace("InitProducerId", txn_id, txn, decision)
        if decision.fence:
            self._abort(txn, now, "a new producer with the same transactional id fenced the old one")
        if decision.error:
            return decision.error, -1, -1
        error = await self._write(txn, decision.write)
        if error:
            return error, -1, -1
        return ErrorCode.NONE, txn.producer_id, txn.epoch

    async def add_partitions(self, txn_id: str, producer_id: int, epoch: int, partitions) -> ErrorCode:
        error = self.status(txn_id)
        if error:
            return error
        txn = self.txns.get(txn_id)
        decision = st.add_partitions(txn, producer_id, epoch, partitions, now_ms())
        _trace(f"AddPartitions {sorted(partitions)} of {producer_id}/{epoch}", txn_id, txn, decision)
        if decision.error or decision.write is None:
            return decision.error
        return await self._write(txn, decision.write)

    def verify_partitions(self, txn_id: str, producer_id: int, epoch: int, partitions) -> dict:
        """KIP-890's verify-only check, per partition."""
        error = self.status(txn_id)
        if error:
            return dict.fromkeys(partitions, error)
        return st.verify_partitions(self.txns.get(txn_id), producer_id, epoch, partitions)

    def verify_here(self, txn_id: str, producer_id: int, epoch: int, tp) -> ErrorCode:
        """A partition leader's check before it appends the first batch of a
        transaction, when this broker coordinates the id (``verify_remote``
        asks another coordinator): INVALID_TXN_STATE when the partition is
        not in the transaction."""
        if not self.config["transaction.partition.verification.enable"]:
            return ErrorCode.NONE
        error = self.verify_partitions(txn_id, producer_id, epoch, [tp])[tp]
        if error:
            txn = self.txns.get(txn_id)
            log.info("a batch of producer %d (epoch %d) for %s-%d is not in the transaction of %r (%s): %s",
                     producer_id, epoch, tp[0], tp[1], txn_id, _describe(txn), error.name)
        return _as_produce_error(error)

    def verifies_elsewhere(self, txn_id: str) -> bool:
        """Whether a leader here must ask another broker to verify this id's
        batches (cluster mode, the coordinator elsewhere)."""
        if not self.cluster or not self.config["transaction.partition.verification.enable"]:
            return False
        return self.status(txn_id) == ErrorCode.NOT_COORDINATOR and self.markers.links is not None

    async def verify_remote(self, txn_id: str, producer_id: int, epoch: int, tps) -> dict:
        """KIP-890's check, asked of the coordinator on another broker with
        AddPartitionsToTxn v4 (verify only): per partition, NONE or the
        error the produce answers (NOT_ENOUGH_REPLICAS, retriable, when the
        coordinator cannot be asked now, as Kafka maps it)."""
        info = self.metadata.topic(TXN_TOPIC)
        leader = info.partitions[self.partition_index(txn_id)].leader if info is not None else -1
        if leader < 0 or leader == self.replicas.node_id:
            return dict.fromkeys(tps, ErrorCode.NOT_ENOUGH_REPLICAS)
        topics: dict[str, list[int]] = {}
        for topic, index in tps:
            topics.setdefault(topic, []).append(index)
        request = AddPartitionsToTxnRequest(transactions=[AddPartitionsToTxnTransaction(
            transactional_id=txn_id, producer_id=producer_id, producer_epoch=epoch, verify_only=True,
            topics=[AddPartitionsToTxnTopic(name=t, partitions=ids) for t, ids in topics.items()],
        )])
        try:
            response = await self.markers.links.call(leader, request, 4)
        except (OSError, LinkError, ProtocolError, trio.TooSlowError) as exc:
            log.info("verifying a batch of %r with broker %d failed: %s", txn_id, leader, exc)
            return dict.fromkeys(tps, ErrorCode.NOT_ENOUGH_REPLICAS)
        found = {}
        if not response.error_code:
            for result in response.results_by_transaction:
                for topic in result.topic_results:
                    for p in topic.results_by_partition:
                        found[(topic.name, p.partition_index)] = ErrorCode(p.partition_error_code)
        out = {tp: _as_produce_error(found.get(tp, ErrorCode.NOT_ENOUGH_REPLICAS)) for tp in tps}
        for tp, error in out.items():
            if error:
                log.info("a batch of producer %d (epoch %d) for %s-%d was refused by coordinator %d: %s",
                         producer_id, epoch, tp[0], tp[1], leader, error.name)
        return out

    async def end_txn(self, txn_id: str, producer_id: int, epoch: int, commit: bool) -> ErrorCode:
        error = self.status(txn_id)
        if error:
            return error
        txn = self.txns.get(txn_id)
        decision = st.end_txn(txn, producer_id, epoch, commit, now_ms())
        _trace(f"EndTxn {'commit' if commit else 'abort'} of {producer_id}/{epoch}", txn_id, txn, decision)
        if decision.error or decision.write is None:
            return decision.error
        error = await self._write(txn, decision.write)
        if not error:
            self._send_markers(txn)
        return error

    def _abort(self, txn: Txn, now: int, why: str) -> None:
        """Abort an open transaction under a bumped epoch, fencing its producer."""
        epoch = st.fence(txn)
        decision = st.end_txn(txn, txn.producer_id, epoch, False, now, from_client=False)
        if decision.write is None:
            txn.abandon()
            return
        log.info("aborting the transaction of %r (producer %d): %s", txn.txn_id, txn.producer_id, why)
        done = self._start_write(txn, decision.write)
        done.then(lambda error: None if error else self._send_markers(txn))

    async def _new_producer_id(self) -> int:
        pid = self.producer_ids.new_producer_id()
        if pid is None:
            try:
                pid = await self.producer_ids.next_producer_id()
            except KafkaError as exc:
                raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, exc.message) from None
        return pid

    # -- writing -------------------------------------------------------------------

    async def _write(self, txn: Txn, new: Txn | None) -> ErrorCode:
        return await self._start_write(txn, new).wait()

    def _start_write(self, txn: Txn, new: Txn | None):
        """Write ``new`` (None: a tombstone) for ``txn``; applied once committed.
        The completion's result is the error Kafka answers for the write."""
        value = None if new is None else encode_value(_to_value(new))
        partition = self.partition_index(txn.txn_id)
        expected_epoch = self.coordinator_epoch(txn.txn_id)

        def written(error: ErrorCode, appended) -> None:
            if error == ErrorCode.NONE and (
                self.partitions.get(partition) != ACTIVE or self.coordinator_epoch(txn.txn_id) != expected_epoch
            ):
                error = ErrorCode.NOT_COORDINATOR  # another coordinator's state now
            if error:
                txn.abandon()
            elif new is None:
                txn.abandon()
                txn.state = TxnState.DEAD
                if self.txns.get(txn.txn_id) is txn:
                    del self.txns[txn.txn_id]
            else:
                txn.apply(new)
            result[0] = WRITE_ERRORS.get(error, error)

        result = [ErrorCode.NONE]
        done = self.writer.write(txn.txn_id, [NewRecord(key=encode_key(txn.txn_id), value=value)], now_ms(), written)
        mapped = type(done)()
        done.then(lambda _: mapped(result[0]))
        return mapped

    # -- markers -------------------------------------------------------------------

    def _send_markers(self, txn: Txn) -> None:
        if self._nursery is None:
            self._unfinished.append(txn)
        else:
            self._nursery.start_soon(self._complete, txn, self.coordinator_epoch(txn.txn_id))

    def _finish_unfinished(self) -> None:
        pending, self._unfinished = self._unfinished, []
        for txn in pending:
            if self.txns.get(txn.txn_id) is txn and txn.state in st.PREPARING:
                self._send_markers(txn)

    async def _complete(self, txn: Txn, coordinator_epoch: int) -> None:
        try:
            await self._finish(txn, coordinator_epoch)
        except Exception:  # a bug: this transaction stays prepared (finished on the next load), the broker goes on
            log.exception("finishing the transaction of %r failed", txn.txn_id)

    async def _finish(self, txn: Txn, coordinator_epoch: int) -> None:
        """Write the markers of a prepared transaction, then its end."""
        commit = txn.state == TxnState.PREPARE_COMMIT
        partition = self.partition_index(txn.txn_id)
        fenced = await self.markers.write(
            txn.partitions, txn.producer_id, txn.epoch, commit, coordinator_epoch,
            still_ours=lambda: self.txns.get(txn.txn_id) is txn and self.partitions.get(partition) == ACTIVE,
        )
        if fenced or self.txns.get(txn.txn_id) is not txn:
            return
        while True:
            error = await self._write(txn, st.completed(txn, now_ms()))
            if not error or error == ErrorCode.NOT_COORDINATOR or self.txns.get(txn.txn_id) is not txn:
                return
            log.warning("completing the transaction of %r: %s; retrying", txn.txn_id, error.name)
            await trio.sleep(0.1)

    # -- the timer -----------------------------------------------------------------

    async def run(self) -> None:
        config = self.config
        abort_every = config["transaction.abort.timed.out.transaction.cleanup.interval.ms"] / 1000
        expire_every = config["transaction.remove.expired.transaction.cleanup.interval.ms"] / 1000
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.writer.run)
            self._finish_unfinished()
            next_expiry = trio.current_time() + expire_every
            while True:
                await trio.sleep(abort_every)
                try:
                    self.abort_timed_out(now_ms())
                    if trio.current_time() >= next_expiry:
                        next_expiry = trio.current_time() + expire_every
                        self.expire(now_ms())
                except Exception:
                    log.exception("the transaction coordinator's timer failed")

    def abort_timed_out(self, now: int) -> int:
        late = st.timed_out(self.txns.values(), now)
        for txn in late:
            self._abort(txn, now, f"open longer than its timeout of {txn.timeout_ms} ms")
        return len(late)

    def expire(self, now: int) -> int:
        idle = st.expired(self.txns.values(), now, self.config["transactional.id.expiration.ms"])
        for txn in idle:
            txn.pending = TxnState.DEAD
            self._start_write(txn, None)
        return len(idle)

    # -- admin ---------------------------------------------------------------------

    def describe(self, txn_id: str) -> Txn | None:
        return self.txns.get(txn_id)


def _as_produce_error(error: ErrorCode) -> ErrorCode:
    """What a produce answers for a verification's error (Kafka's mapping):
    the coordinator's transient errors are retriable for the producer."""
    if error in (ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.NOT_COORDINATOR,
                 ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, ErrorCode.CONCURRENT_TRANSACTIONS):
        return ErrorCode.NOT_ENOUGH_REPLICAS
    if error == ErrorCode.PRODUCER_FENCED:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return error


def _trace(op: str, txn_id: str, txn: Txn | None, decision) -> None:
    if log.isEnabledFor(TRACE_LEVEL):
        after = f" -> {decision.write.state.name}" if decision.write is not None else ""
        log.log(TRACE_LEVEL, "%s for %r (%s): %s%s", op, txn_id, _describe(txn), decision.error.name, after)


def _describe(txn: Txn | None) -> str:
    if txn is None:
        return "unknown"
    pending = f", becoming {txn.pending.name}" if txn.pending is not None else ""
    parts = ",".join(f"{t}-{i}" for t, i in sorted(txn.partitions))
    return f"producer {txn.producer_id} epoch {txn.epoch}, {txn.state.name}{pending}, partitions [{parts}]"


def _to_value(txn: Txn) -> TxnLogValue:
    parts: dict[str, list[int]] = {}
    for topic, index in sorted(txn.partitions):
        parts.setdefault(topic, []).append(index)
    return TxnLogValue(txn.producer_id, txn.epoch, txn.timeout_ms, int(txn.state), parts, txn.update_ms,
                       txn.start_ms)


def _read_partition(part, found: dict) -> None:
    plog = part.log
    offset, end = plog.log_start_offset, plog.log_end_offset
    while offset < end:
        batches, _ = split_batches(plog.read(offset, LOAD_CHUNK, max_offset=end).data)
        progressed = False
        for batch in batches:
            if batch.next_offset <= offset:
                continue
            offset, progressed = batch.next_offset, True
            if batch.is_control:
                continue
            try:
                for record in batch.records():
                    txn_id = decode_key(record.key)
                    if txn_id is not None:
                        found[txn_id] = decode_value(record.value)
            except ProtocolError as exc:
                log.error("%s-%d: skipping unreadable batch at %d: %s", part.topic, part.index, batch.base_offset, exc)
        if not progressed:
            break
