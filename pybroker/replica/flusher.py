"""Group commit for acks=all: one fsync round covers every append made
before it started, across partitions and connections.

ReplicaManager.until_committed calls ``await flusher.flush(logs)`` after
the appends it waits for; the flusher task runs rounds back to back while there is work,
so under load each fsync is shared by every request that arrived while the
previous one ran. A round's fsyncs run in a worker thread (storage.flush),
so the event loop keeps serving meanwhile, unless the round is small and
recent rounds were quick (``SyncPlacement``): then they run on the event
loop, because handing a 0.2 ms fsync to a thread and back costs more than
the fsync when the machine is busy (measured: about 3 ms a round). A disk
that hangs outright hangs the broker with it then, as a Kafka request
thread that flushes would hang; the next round after a slow one is back
in the thread, and one small round a second tries the event loop again.
Only rounds on the event loop are timed for that choice: a worker
thread's timing also counts its wait for the interpreter lock after the
fsync returns (up to the 5 ms switch interval while the event loop is
busy), which kept a quick disk's rounds in the thread for good.

Leaders with followers do not wait for a round: after an append they
``request`` a flush with a callback, which runs once a round that covered
the log is over (its fsync done or failed); their high watermark counts
only fsynced records, so the callback is what moves it. Only rounds that
carry such requests pay for the callbacks.

Failures are per log: a log whose fsync fails takes its log directory
offline (its waiters get KAFKA_STORAGE_ERROR); the other logs of the round
are unaffected. The task itself never dies: anything unexpected fails the
round's waiters, is logged, and the next round runs as usual.
"""

from __future__ import annotations

import logging
import time

import trio

from pybroker.storage.flush import FlushTimes, abort_flush, begin_flush, complete_flush

log = logging.getLogger("pybroker.flusher")


class _Round:
    __slots__ = ("done", "failed")

    def __init__(self):
        self.done = trio.Event()
        self.failed: dict = {}  # log -> why its flush failed


# A round of at most this many bytes may sync on the event loop...
INLINE_SYNC_BYTES = 256 * 1024
# ...while recent rounds there took less than this on average. A slow disk
# (or a burst of writeback) pushes rounds to the thread. A 1 ms bound, with
# the thread's rounds timed too, kept a quick disk's rounds there after any
# writeback burst, where the hops cost more than the fsyncs: at 10k msg/s on
# three replicas with acks=all the end-to-end p99 was 81 ms, against 53 ms
# with this bound and only inline rounds timed (medians of three runs).
INLINE_SYNC_SECONDS = 0.005
# While rounds go to the thread, one small round this often is tried on
# the event loop again, and its time alone says where the next ones go.
INLINE_RETRY_SECONDS = 1.0
_RECENT_WEIGHT = 0.25
# Scheduling passes a round waits before it starts. The append that asks
# for a round also wakes the follower Fetches parked for it, and trio runs
# the tasks woken together in random order: an inline fsync that runs
# first blocks the event loop while their answers wait. Two passes let a
# woken Fetch build its answer and its connection send it.
ROUND_DEFER_PASSES = 2


class SyncPlacement:
    """Where a flush round's fsyncs run: on the event loop when the round
    is small and the disk has been quick there, else in a worker thread.
    Times are trio's clock, in seconds."""

    def __init__(self):
        self.recent = 0.0  # moving average of an inline round's fsync seconds
        self.retry_at = 0.0  # while recent is slow: when to try inline again

    def inline(self, size: int, now: float) -> bool:
        return size <= INLINE_SYNC_BYTES and (self.recent < INLINE_SYNC_SECONDS or now >= self.retry_at)

    def observe(self, seconds: float, now: float) -> None:
        """An inline round's fsyncs took ``seconds``."""
        if self.recent >= INLINE_SYNC_SECONDS:
            self.recent = seconds  # a retry: the disk measured afresh
        else:
            self.recent += (seconds - self.recent) * _RECENT_WEIGHT
        if self.recent >= INLINE_SYNC_SECONDS:
            self.retry_at = now + INLINE_RETRY_SECONDS


class Flusher:
    def __init__(self):
        self._pending: set = set()
        self._callbacks: dict = {}  # log -> called after the next round
        self._wake = trio.Event()
        self._next = _Round()
        self.rounds = 0
        # Each log's fsync in a round, timed (the metrics' flush latency).
        self.flush_times = FlushTimes()
        self.placement = SyncPlacement()
        self.inline_rounds = 0

    def request(self, plog, done) -> None:
        """Flush ``plog`` in the next round without waiting for it;
        ``done()`` runs after that round (whether the fsync worked or not)."""
        self._pending.add(plog)
        self._callbacks[plog] = done
        self._wake.set()

    async def flush(self, logs) -> dict:
        """Return once everything appended to ``logs`` so far is on disk:
        {log: reason} for those whose flush failed, empty if none did."""
        self._pending.update(logs)
        rnd = self._next
        self._wake.set()
        await rnd.done.wait()
        return {plog: rnd.failed[plog] for plog in logs if plog in rnd.failed}

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            for _ in range(ROUND_DEFER_PASSES):
                await trio.lowlevel.cancel_shielded_checkpoint()
            self._wake = trio.Event()
            logs, self._pending = self._pending, set()
            rnd, self._next = self._next, _Round()
            callbacks = self._callbacks or None
            if callbacks is not None:
                self._callbacks = {}
            try:
                await self._round(logs, rnd.failed)
            except Exception as exc:
                log.exception("flush round failed")
                for plog in logs:
                    rnd.failed.setdefault(plog, f"flush failed: {exc!r}")
            finally:
                self.rounds += 1
                rnd.done.set()
                if callbacks is not None:
                    _call_back(callbacks)

    async def _round(self, logs, failed: dict) -> None:
        tickets = []
        for plog in logs:
            try:
                tickets.append(begin_flush(plog))
            except OSError as exc:  # its directory is offline
                failed[plog] = str(exc)
        if not tickets:
            return
        if self.placement.inline(sum(t.size for t in tickets), trio.current_time()):
            self.inline_rounds += 1
            errors = _sync_all(tickets)
            self.placement.observe(sum(seconds for _, seconds in errors), trio.current_time())
        else:
            errors = await trio.to_thread.run_sync(_sync_all, tickets)
        for ticket, (error, seconds) in zip(tickets, errors):
            if error is None:
                complete_flush(ticket)
                self.flush_times.observe(seconds)
            else:
                failed[ticket.log] = str(abort_flush(ticket, error))


def _call_back(callbacks: dict) -> None:
    for done in callbacks.values():
        try:
            done()
        except Exception:
            log.exception("a flush callback failed")


def _sync_all(tickets) -> list[tuple[OSError | None, float]]:
    """Each ticket's fsyncs, (its error or None, seconds); in a worker
    thread or on the event loop, as the round's placement says."""
    errors: list[tuple[OSError | None, float]] = []
    for ticket in tickets:
        started = time.perf_counter()
        try:
            ticket.sync()
            errors.append((None, time.perf_counter() - started))
        except OSError as exc:
            errors.append((exc, 0.0))
    return errors
