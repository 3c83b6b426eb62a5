"""Group commit for acks=all: one fsync round covers every append made
before it started, across partitions and connections.

A producer that needs durability calls ``await flusher.flush(logs)`` after
its append; the flusher task runs rounds back to back while there is work,
so under load each fsync is shared by every request that arrived while the
previous one ran. Topics with ``write.caching=true`` skip it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from storage.log import PartitionLog


class Flusher:
    def __init__(self, broker):
        self.broker = broker
        self._pending: set[PartitionLog] = set()
        self._wake = trio.Event()
        self._next_round = trio.Event()
        self.rounds = 0

    async def flush(self, logs) -> None:
        self._pending.update(logs)
        done = self._next_round
        self._wake.set()
        await done.wait()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            logs, self._pending = self._pending, set()
            done, self._next_round = self._next_round, trio.Event()
            try:
                for log in logs:
                    log.flush()
            finally:
                self.rounds += 1
                done.set()
