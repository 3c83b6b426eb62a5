"""The broker: state shared by all handlers, and its life cycle.

``Broker.run`` binds the listeners, serves connections and the periodic
tasks (retention, flush policy, checkpoints) until ``stop()`` or a
signal; then it stops accepting, gives in-flight requests
``shutdown.grace.ms`` to finish, cancels the rest, flushes every log and
leaves the clean-shutdown marker.
"""

from __future__ import annotations

import functools
import logging
import re
import time

import trio

from storage import cleaner
from storage.config import LogConfig
from storage.manager import LogManager

from . import handlers
from .cluster.local import LocalMetadata
from .cluster.model import BrokerInfo, TopicInfo
from .config import BrokerConfig
from .fetch_sessions import FetchSessionCache
from .flusher import Flusher
from .groups.coordinator import GroupCoordinator
from .partition import Partition
from .producers import ProducerStates
from .server import Connection, close_idle_connections

log = logging.getLogger("pybroker")

LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_LENGTH = 249


def topic_name_problem(name: str) -> str | None:
    """Kafka's rules for topic names; None when the name is legal."""
    if not name:
        return "Topic name is illegal, it can't be empty"
    if name in (".", ".."):
        return 'Topic name cannot be "." or ".."'
    if len(name) > MAX_TOPIC_LENGTH:
        return f"Topic name is illegal, it can't be longer than {MAX_TOPIC_LENGTH} characters"
    if not LEGAL_TOPIC.match(name):
        return f"Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
    return None


def now_ms() -> int:
    return int(time.time() * 1000)


class StorageFailure(Exception):
    """A log could not be created; Kafka answers KAFKA_STORAGE_ERROR."""


class Broker:
    def __init__(self, config: BrokerConfig):
        self.config = config
        self.node_id = config.node_id
        self.stopping = False
        self.handlers = handlers.load_all()
        first = config.advertised[0]
        # Metadata first: the logs are opened with their topics' configs.
        self.metadata = LocalMetadata(
            config.log_dirs[0], self.node_id, BrokerInfo(self.node_id, first.host, first.port), config["cluster.id"]
        )
        self.logs = LogManager(config.log_dirs, self.log_config_for)
        self.partitions: dict[tuple[str, int], Partition] = {}
        for topic in self.metadata.topics.values():
            self._open_topic(topic)
        for tp in list(self.logs.logs):
            if tp not in self.partitions:
                log.warning("deleting log of unknown partition %s-%d", *tp)
                self.logs.delete(*tp)
        self.groups = GroupCoordinator(self)
        self.groups.load(now_ms())
        self.producers = ProducerStates(self)
        for (topic, index), part in self.partitions.items():
            self.producers.load(topic, index, part.log)
        self.flusher = Flusher(self)
        self.fetch_sessions = FetchSessionCache()
        self.bound: list[tuple[str, int]] = []
        self.connections: set[Connection] = set()
        self.cleaning: set[tuple[str, int]] = set()
        self._stop = None

    # -- topics ----------------------------------------------------------------

    def log_config_for(self, topic: str) -> LogConfig:
        info = self.metadata.topics.get(topic)
        return LogConfig.from_props(info.configs if info else {}, base=self.config.log_config)

    def _open_topic(self, topic: TopicInfo) -> None:
        cfg = self.log_config_for(topic.name)
        for p in topic.partitions:
            plog = self.logs.get(topic.name, p.index) or self.logs.create(topic.name, p.index, cfg)
            self.partitions[(topic.name, p.index)] = Partition(topic.name, p.index, plog, p)

    def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None) -> TopicInfo:
        """Create a topic; the caller has validated name, count and configs.
        Raises StorageFailure, with nothing left behind, when its partition
        logs cannot be made (out of descriptors, a full or broken disk)."""
        info = self.metadata.create_topic(name, partitions, configs)
        try:
            self._open_new_partitions(info, 0)
        except StorageFailure:
            self.metadata.delete_topic(name)
            raise
        log.info("created topic %s with %d partitions", name, partitions)
        return info

    def _open_new_partitions(self, topic: TopicInfo, first: int) -> None:
        cfg = self.log_config_for(topic.name)
        opened = []
        try:
            for p in topic.partitions[first:]:
                plog = self.logs.create(topic.name, p.index, cfg)
                opened.append(p.index)
                self.partitions[(topic.name, p.index)] = Partition(topic.name, p.index, plog, p)
        except OSError as exc:
            for index in opened:
                self.partitions.pop((topic.name, index), None)
                self.logs.delete(topic.name, index)
            log.error("cannot create the logs of %s: %s", topic.name, exc)
            raise StorageFailure(f"cannot create the logs of {topic.name}: {exc}") from exc

    def auto_create_topic(self, name: str) -> TopicInfo | None:
        if not self.config["auto.create.topics.enable"] or topic_name_problem(name):
            return None
        try:
            return self.create_topic(name, self.config["num.partitions"])
        except StorageFailure:
            return None  # logged; the client sees an unknown topic and retries

    def delete_topic(self, name: str) -> None:
        info = self.metadata.delete_topic(name)
        for p in info.partitions:
            part = self.partitions.pop((name, p.index), None)
            if part is not None:
                part.wake()
            self.logs.delete(name, p.index)
        log.info("deleted topic %s", name)

    def add_partitions(self, name: str, total: int) -> None:
        first = len(self.metadata.topics[name].partitions)
        self.metadata.add_partitions(name, total)
        try:
            self._open_new_partitions(self.metadata.topics[name], first)
        except StorageFailure:
            self.metadata.remove_partitions_from(name, first)
            raise

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        self.metadata.set_topic_configs(name, configs)
        self.logs.update_config(name, self.log_config_for(name))

    def partition(self, topic: str, index: int) -> Partition | None:
        return self.partitions.get((topic, index))

    # -- life cycle ------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run`` to shut down gracefully (thread-unsafe: call from the Trio thread)."""
        if self._stop is not None:
            self._stop.set()

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._stop = trio.Event()
        grace = self.config["shutdown.grace.ms"] / 1000
        try:
            async with trio.open_nursery() as root:
                listeners = []
                for lst in self.config.listeners:
                    listeners += await trio.open_tcp_listeners(lst.port, host=lst.host)
                self.bound = [ls.socket.getsockname()[:2] for ls in listeners]
                self._advertise()
                conns = trio.open_nursery()
                async with conns as conn_nursery:
                    accept_scope = trio.CancelScope()
                    root.start_soon(self._accept, listeners, conn_nursery, accept_scope)
                    root.start_soon(self._periodic)
                    idle_ms = self.config["connections.max.idle.ms"]
                    if idle_ms > 0:
                        root.start_soon(close_idle_connections, self, idle_ms / 1000)
                    if self.config["log.cleaner.enable"]:
                        root.start_soon(self._compact)
                    root.start_soon(self.flusher.run)
                    root.start_soon(self.groups.run)
                    log.info(
                        "pybroker %d serving on %s, data in %s",
                        self.node_id,
                        ", ".join(f"{h}:{p}" for h, p in self.bound),
                        ", ".join(str(d) for d in self.config.log_dirs),
                    )
                    task_status.started(self.bound)
                    await self._stop.wait()
                    log.info("shutting down")
                    self.stopping = True
                    accept_scope.cancel()
                    for conn in list(self.connections):
                        conn.stop_reading()
                    conn_nursery.cancel_scope.deadline = trio.current_time() + grace
                root.cancel_scope.cancel()
        finally:
            self.stopping = True
            self.producers.snapshot_all()
            self.logs.close()
            log.info("stopped; logs flushed")

    def _advertise(self) -> None:
        adv = self.config.advertised[0]
        port = adv.port
        if port == 0 and self.bound:
            port = self.bound[0][1]
        self.metadata.broker = BrokerInfo(self.node_id, adv.host, port)

    async def _accept(self, listeners, nursery, scope: trio.CancelScope) -> None:
        with scope:
            async with trio.open_nursery() as inner:
                for listener in listeners:
                    inner.start_soon(self._accept_one, listener, nursery)
        for listener in listeners:
            await trio.aclose_forcefully(listener)

    async def _accept_one(self, listener, nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                await trio.sleep(0.1)  # back off on e.g. EMFILE rather than spin
                continue
            nursery.start_soon(Connection(self, stream).serve)

    async def _periodic(self) -> None:
        """Retention, the flush.ms / flush.messages policy and checkpoints."""
        cfg = self.config
        retention_every = cfg["log.retention.check.interval.ms"] / 1000
        flush_every = cfg["log.flush.scheduler.interval.ms"] / 1000
        checkpoint_every = cfg["log.flush.offset.checkpoint.interval.ms"] / 1000
        next_retention = trio.current_time() + retention_every
        next_checkpoint = trio.current_time() + checkpoint_every
        while True:
            await trio.sleep(flush_every)
            self.logs.flush_dirty()
            now = trio.current_time()
            if now >= next_retention:
                next_retention = now + retention_every
                deleted = self.logs.delete_expired(now_ms(), frozenset(self.cleaning))
                if deleted:
                    log.info("retention deleted %d segments", deleted)
            if now >= next_checkpoint:
                next_checkpoint = now + checkpoint_every
                self.logs.checkpoint()
                self.producers.checkpoint()

    async def _compact(self) -> None:
        """The log cleaner: every ``log.cleaner.backoff.ms``, compact each
        compacted partition that is due. The rewrite runs in a worker thread
        on closed segments; the swap happens here, on the owner thread.
        Retention skips a partition while it is being compacted."""
        backoff = self.config["log.cleaner.backoff.ms"] / 1000
        while True:
            await trio.sleep(backoff)
            for tp, part in list(self.partitions.items()):
                if part.log.config.compact:
                    await self._compact_one(tp, part)

    async def _compact_one(self, tp, part) -> None:
        state = self.producers.for_partition(*tp)
        tails = {pid: e.batches[-1].last_offset for pid, e in state.entries.items() if e.batches}
        prepare = functools.partial(cleaner.prepare, part.log, now_ms(), producer_last_offsets=tails)
        self.cleaning.add(tp)
        try:
            try:
                plan = await trio.to_thread.run_sync(prepare)
            except Exception:
                if self.partitions.get(tp) is part:
                    log.exception("compaction of %s-%d failed", *tp)
                return
            if plan is None:
                return
            if self.partitions.get(tp) is not part:  # deleted meanwhile
                cleaner.discard(plan)
                return
            result = cleaner.commit(part.log, plan)
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
