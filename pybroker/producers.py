"""Idempotent producers: producer ids, epochs and sequence de-duplication.

Per partition and producer id the broker remembers the epoch and the
metadata of the last five batches it appended (first and last sequence,
base offset). A batch is checked before it is appended:

* an epoch below the known one is fenced: INVALID_PRODUCER_EPOCH;
* a batch equal to one of the five (same epoch and sequence range) is a
  retry of something already written: it is answered with the original
  offsets and not written again;
* with the same epoch, the first sequence must follow the last one (int32
  wrapping to 0); otherwise OUT_OF_ORDER_SEQUENCE_NUMBER;
* a new epoch must start at sequence 0; a producer id we hold no state for
  is accepted at any sequence (its state may have expired), as Kafka does.

State is rebuilt on start from the batch headers in the logs (every batch
of an idempotent producer carries its id, epoch and sequences), and idle
producers are forgotten after ``producer.id.expiration.ms``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from protocol.error_codes import ErrorCode

NO_PRODUCER_ID = -1
MAX_CACHED_BATCHES = 5
INT32_MAX = 0x7FFFFFFF


@dataclass(slots=True)
class BatchMeta:
    first_seq: int
    last_seq: int
    base_offset: int
    last_offset: int
    timestamp: int


@dataclass(slots=True)
class ProducerEntry:
    epoch: int
    batches: deque = field(default_factory=lambda: deque(maxlen=MAX_CACHED_BATCHES))
    last_seen_ms: int = 0

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1


class DuplicateBatch(Exception):
    def __init__(self, meta: BatchMeta):
        self.meta = meta


class SequenceError(Exception):
    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


def next_seq(seq: int) -> int:
    return 0 if seq == INT32_MAX else seq + 1


class PartitionProducers:
    """Producer state of one partition."""

    def __init__(self):
        self.entries: dict[int, ProducerEntry] = {}

    def check(self, producer_id: int, epoch: int, first_seq: int, last_seq: int) -> None:
        """Raise DuplicateBatch or SequenceError if the batch must not be appended."""
        entry = self.entries.get(producer_id)
        if entry is None:
            return
        if epoch < entry.epoch:
            raise SequenceError(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"producer {producer_id} epoch {epoch} is older than the current epoch {entry.epoch}",
            )
        if epoch > entry.epoch:
            if first_seq != 0:
                raise SequenceError(
                    ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                    f"producer {producer_id} started epoch {epoch} at sequence {first_seq}, not 0",
                )
            return
        for meta in entry.batches:
            if meta.first_seq == first_seq and meta.last_seq == last_seq:
                raise DuplicateBatch(meta)
        if entry.batches and first_seq != next_seq(entry.last_seq):
            raise SequenceError(
                ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                f"producer {producer_id} sent sequence {first_seq}, expected {next_seq(entry.last_seq)}",
            )

    def update(self, producer_id: int, epoch: int, meta: BatchMeta, now: int) -> None:
        entry = self.entries.get(producer_id)
        if entry is None or epoch != entry.epoch:
            entry = self.entries[producer_id] = ProducerEntry(epoch)
        entry.batches.append(meta)
        entry.last_seen_ms = now

    def expire(self, older_than_ms: int) -> int:
        gone = [pid for pid, e in self.entries.items() if e.last_seen_ms < older_than_ms]
        for pid in gone:
            del self.entries[pid]
        return len(gone)


class ProducerStates:
    """Producer-id allocation and the per-partition states of one broker."""

    def __init__(self, broker):
        self.broker = broker
        self._ids = iter(())
        self.partitions: dict[tuple[str, int], PartitionProducers] = {}

    def new_producer_id(self) -> int:
        for pid in self._ids:
            return pid
        self._ids = iter(self.broker.metadata.allocate_producer_ids())
        return next(self._ids)

    def for_partition(self, topic: str, index: int) -> PartitionProducers:
        key = (topic, index)
        state = self.partitions.get(key)
        if state is None:
            state = self.partitions[key] = PartitionProducers()
        return state

    def forget_partition(self, topic: str, index: int) -> None:
        self.partitions.pop((topic, index), None)

    def expire(self, now_ms: int | None = None) -> int:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        limit = now_ms - self.broker.config["producer.id.expiration.ms"]
        return sum(p.expire(limit) for p in self.partitions.values())

    def checkpoint(self) -> None:
        self.expire()
