"""Group commit for acks=all: one fsync round covers every append made
before it started, across partitions and connections.

A producer that needs durability calls ``await flusher.flush(logs)`` after
its append; the flusher task runs rounds back to back while there is work,
so under load each fsync is shared by every request that arrived while the
previous one ran. The fsyncs run in a worker thread on duplicated file
descriptors (storage.flush), so the event loop keeps serving meanwhile.
A failed fsync fails every request of that round (KAFKA_STORAGE_ERROR).
"""

from __future__ import annotations

import logging

import trio

from storage.flush import abort_flush, begin_flush, complete_flush

log = logging.getLogger("pybroker.flusher")


class FlushFailed(Exception):
    pass


class _Round:
    __slots__ = ("done", "error")

    def __init__(self):
        self.done = trio.Event()
        self.error: BaseException | None = None


class Flusher:
    def __init__(self, broker):
        self.broker = broker
        self._pending: set = set()
        self._wake = trio.Event()
        self._next = _Round()
        self.rounds = 0

    async def flush(self, logs) -> None:
        """Return once everything appended to ``logs`` so far is on disk;
        raise FlushFailed if the fsync failed."""
        self._pending.update(logs)
        rnd = self._next
        self._wake.set()
        await rnd.done.wait()
        if rnd.error is not None:
            raise FlushFailed(str(rnd.error))

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            logs, self._pending = self._pending, set()
            rnd, self._next = self._next, _Round()
            tickets = [begin_flush(plog) for plog in logs]
            try:
                await trio.to_thread.run_sync(_sync_all, tickets)
                for ticket in tickets:
                    complete_flush(ticket)
            except OSError as exc:
                log.error("fsync failed: %s", exc)
                for ticket in tickets:
                    abort_flush(ticket)
                rnd.error = exc
            finally:
                self.rounds += 1
                rnd.done.set()


def _sync_all(tickets) -> None:
    error = None
    for ticket in tickets:
        try:
            ticket.sync()
        except OSError as exc:
            error = error or exc
    if error is not None:
        raise error
