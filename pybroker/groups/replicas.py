"""What the group coordinator needs of the replica layer: one operation,
"append and complete when committed".

``append`` writes a batch to the leader's log at once (or raises
KafkaError); ``until_committed`` returns once each append is committed
(high watermark past it and, unless its topic caches writes, fsynced) or
has failed or timed out (``timeout_ms``), with the failures. The coordinator's state machines apply a
write's effect, and answer the request that caused it, only then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pybroker.protocol.errors import KafkaError
    from pybroker.protocol.record_batch import RecordBatch

from pybroker.replica.manager import Appended, Origin

__all__ = ["OFFSETS_ACKS", "Appended", "Origin", "Replicas"]

# offsets.commit.required.acks: Kafka's default, every in-sync replica.
OFFSETS_ACKS = -1


class Replicas(Protocol):
    def append(self, topic: str, index: int, batch: RecordBatch, *, now: int, acks: int,
               origin: Origin = ...) -> Appended: ...

    async def until_committed(
        self, appended: list[Appended], timeout_ms: int | None = None
    ) -> dict[Appended, KafkaError]: ...
