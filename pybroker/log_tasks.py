"""The logs' background work: the flush.ms / flush.messages policy,
retention, checkpoints and producer-state snapshots on their intervals,
and the log cleaner (compaction).

Each step runs through ``background``: an I/O error has already taken its
log dir offline where it happened; anything else is a bug, logged with
its traceback, and the work goes on next time.
"""

from __future__ import annotations

import functools
import logging
import time

import trio

from pybroker.storage import cleaner
from pybroker.storage.manager import LogManager

from .config import BrokerConfig
from .replica import ReplicaManager

log = logging.getLogger("pybroker.logs")


def now_ms() -> int:
    return int(time.time() * 1000)


def background(what: str, fn, *args):
    """One step of background work; None if it failed unexpectedly."""
    try:
        return fn(*args)
    except Exception:
        log.exception("%s failed", what)
        return None


class LogTasks:
    def __init__(self, config: BrokerConfig, logs: LogManager, replicas: ReplicaManager):
        self.config = config
        self.logs = logs
        self.replicas = replicas
        # Partitions being compacted: retention leaves them alone meanwhile.
        self.cleaning: set[tuple[str, int]] = set()

    async def run_periodic(self) -> None:
        """Retention, the flush.ms / flush.messages policy and checkpoints."""
        cfg = self.config
        retention_every = cfg["log.retention.check.interval.ms"] / 1000
        flush_every = cfg["log.flush.scheduler.interval.ms"] / 1000
        checkpoint_every = cfg["log.flush.offset.checkpoint.interval.ms"] / 1000
        next_retention = trio.current_time() + retention_every
        next_checkpoint = trio.current_time() + checkpoint_every
        while True:
            await trio.sleep(flush_every)
            background("flush", self.logs.flush_dirty)
            now = trio.current_time()
            if now >= next_retention:
                next_retention = now + retention_every
                deleted = background("retention", self.logs.delete_expired, now_ms(), frozenset(self.cleaning))
                if deleted:
                    log.info("retention deleted %d segments", deleted)
            if now >= next_checkpoint:
                next_checkpoint = now + checkpoint_every
                background("checkpoint", self.logs.checkpoint)
                background("producer snapshots", self.replicas.checkpoint_producers)

    async def run_cleaner(self) -> None:
        """The log cleaner: every ``log.cleaner.backoff.ms``, compact each
        compacted partition that is due. The rewrite runs in a worker thread
        on closed segments; the swap happens here, on the owner thread.
        Retention skips a partition while it is being compacted. An I/O
        error takes the partition's log dir offline; any other error makes
        the partition uncleanable until a restart (as Kafka's cleaner marks
        it), so it is logged once."""
        backoff = self.config["log.cleaner.backoff.ms"] / 1000
        uncleanable: set = set()
        while True:
            await trio.sleep(backoff)
            for tp, part in list(self.replicas.partitions.items()):
                if part.log.config.compact and not part.offline and tp not in uncleanable:
                    await self._compact_one(tp, part, uncleanable)

    async def _compact_one(self, tp, part, uncleanable: set) -> None:
        tails = part.log.producers.last_offsets()
        prepare = functools.partial(cleaner.prepare, part.log, now_ms(), producer_last_offsets=tails)
        self.cleaning.add(tp)
        try:
            try:
                plan = await trio.to_thread.run_sync(prepare)
                if plan is None:
                    return
                if self.replicas.partitions.get(tp) is not part:  # deleted meanwhile
                    cleaner.discard(plan)
                    return
                result = cleaner.commit(part.log, plan)
            except OSError as exc:
                if self.replicas.partitions.get(tp) is part:
                    part.log.io_failed(exc)
                return
            except Exception:
                if self.replicas.partitions.get(tp) is part:
                    log.exception("compaction of %s-%d failed; it is not compacted again until a restart", *tp)
                    uncleanable.add(tp)
                return
            if result is not None:
                log.info(
                    "compacted %s-%d: %d -> %d bytes, %d records removed",
                    *tp,
                    result.bytes_before,
                    result.bytes_after,
                    result.records_removed,
                )
        finally:
            self.cleaning.discard(tp)
