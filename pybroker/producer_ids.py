"""Producer-id allocation for InitProducerId: ids come a block at a time
from the cluster metadata, which persists each block before any id in it
is used, so a restart can never hand one out twice."""

from __future__ import annotations

from collections.abc import Iterator


class ProducerIds:
    def __init__(self, metadata):
        self.metadata = metadata
        self._ids: Iterator[int] = iter(())

    def new_producer_id(self) -> int:
        for pid in self._ids:
            return pid
        self._ids = iter(self.metadata.allocate_producer_ids())
        return next(self._ids)
