"""Producer-id allocation for InitProducerId: ids come a block at a time,
each block persisted before any id in it is used, so that no id is ever
handed out twice.

On a single node the block comes from the cluster metadata file, at once.
In cluster mode it is taken from ZooKeeper's ``/latest_producer_id_block``
by a versioned write (``cluster.zk_producer_ids``), so two brokers never
take the same block; that takes a round trip, so ``new_producer_id``
returns None when the block is used up and ``next_producer_id`` waits for
the next one (one fetch at a time, whoever asks).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import trio


class ProducerIds:
    def __init__(
        self,
        allocate: Callable[[], range] | None = None,
        allocate_async: Callable[[], Awaitable[range]] | None = None,
    ):
        """``allocate`` returns a new block at once (single node);
        ``allocate_async`` fetches one (cluster mode)."""
        self._allocate = allocate
        self._allocate_async = allocate_async
        self._ids: Iterator[int] = iter(())
        self._fetching = trio.Lock()

    def new_producer_id(self) -> int | None:
        """A new id, or None when a block must be fetched first (``next_producer_id``)."""
        for pid in self._ids:
            return pid
        if self._allocate is None:
            return None
        self._ids = iter(self._allocate())
        return next(self._ids)

    async def next_producer_id(self) -> int:
        """A new id, fetching a block if need be; raises what the fetch raises."""
        async with self._fetching:
            pid = self.new_producer_id()
            if pid is None:
                self._ids = iter(await self._allocate_async())
                pid = next(self._ids)
            return pid
