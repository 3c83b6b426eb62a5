"""INTERIM — deleted at the merge of issue #13, replaced by the replica
layer's ReplicaManager (pybroker/replica/manager.py), which offers the
same two operations (groups/replicas.py).

Until then this adapter gives the group coordinator "append and complete
when committed" over what the broker has: its ``Partition`` objects and
the group-commit ``Flusher``. On a single node an append is committed once
it is fsynced (at once for a topic with write.caching=true).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError, ProtocolError


class Origin(enum.Enum):
    CLIENT = "client"
    COORDINATOR = "coordinator"
    REPLICATION = "replication"


@dataclass(eq=False, slots=True)
class Appended:
    """Where an append went; hashed by identity."""

    topic: str
    index: int
    base_offset: int
    last_offset: int
    log_append_time: int
    log_start_offset: int
    duplicate: bool
    partition: object
    acks: int


class InterimReplicas:
    def __init__(self, partition: Callable[[str, int], object], flusher):
        self._partition = partition  # Broker.partition
        self._flusher = flusher

    def partition(self, topic: str, index: int):
        return self._partition(topic, index)

    def append(self, topic: str, index: int, batch, *, now: int, acks: int, origin: Origin = Origin.CLIENT) -> Appended:
        """A batch the coordinator built (so not checked again)."""
        part = self._partition(topic, index)
        if part is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        if len(batch.view) > part.log.config.max_message_bytes:
            raise KafkaError(ErrorCode.MESSAGE_TOO_LARGE)
        try:
            result = part.append_batches([batch], now)
        except OSError as exc:  # KafkaStorageError included: the dir is offline
            raise KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, str(exc)) from None
        except ProtocolError as exc:
            raise KafkaError(ErrorCode.CORRUPT_MESSAGE, str(exc)) from None
        return Appended(topic, index, result.base_offset, result.last_offset, result.log_append_time,
                        part.log.log_start_offset, False, part, acks)

    async def until_committed(self, appended: list[Appended]) -> dict[Appended, KafkaError]:
        logs = {a.partition.log for a in appended if a.acks == -1 and not a.partition.log.config.write_caching}
        failures = await self._flusher.flush(list(logs)) if logs else {}
        out = {}
        for a in appended:
            if self._partition(a.topic, a.index) is not a.partition:
                out[a] = KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "the partition was deleted")
            elif a.partition.log in failures:
                out[a] = KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, failures[a.partition.log])
        return out
