"""The broker: state shared by all handlers, and its life cycle.

``Broker.run`` binds the listeners, serves connections and the periodic
tasks (retention, flush policy, checkpoints) until ``stop()`` or a
signal; then it stops accepting, gives in-flight requests
``shutdown.grace.ms`` to finish, cancels the rest, flushes every log and
leaves the clean-shutdown marker.

A log directory that fails (an I/O error anywhere: an append, an fsync,
a checkpoint, retention, compaction, a producer snapshot) goes offline
and the broker carries on with the others. When none is left it stops
the same way, on purpose, and ``run`` raises LogDirsFailed (Kafka halts
with "Shutdown broker because all log dirs in ... have failed"). An
unexpected error in a background task is logged and the task goes on.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time

import trio

from pybroker.storage import cleaner
from pybroker.storage.config import LogConfig
from pybroker.storage.dirs import check_meta_properties, lock_dirs, write_meta_properties
from pybroker.storage.log import parse_partition_dir
from pybroker.storage.manager import LogManager, discard_new_logs, open_new_logs, remove_detached

from . import handlers
from .cluster.local import LocalMetadata, StorageFailure, find_metadata_file
from .cluster.model import BrokerInfo, TopicInfo
from .config import BrokerConfig
from .fetch_sessions import FetchSessionCache
from .groups.coordinator import GroupCoordinator
from .producer_ids import ProducerIds
from .replica import Partition, ReplicaManager
from .server import Connection, close_idle_connections
from .topic_configs import INTERNAL_METADATA_TOPIC

log = logging.getLogger("pybroker")

# Partition logs closed and renamed between two turns of the event loop.
DETACH_CHUNK = 100

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


def _has_partition_dirs(d) -> bool:
    try:
        with os.scandir(d) as entries:
            for entry in entries:
                if entry.is_dir():
                    try:
                        parse_partition_dir(entry.name)
                        return True
                    except ValueError:
                        pass
    except FileNotFoundError:
        pass
    return False


class ListenerError(Exception):
    """A listener could not be bound (a port in use, say): the operator's to fix."""


class LogDirsFailed(Exception):
    """Every log directory has failed: the broker stopped on purpose."""


class Broker:
    def __init__(self, config: BrokerConfig, *, load: bool = True):
        """Lock the log dirs and check whose they are, writing nothing else;
        with ``load``, open them too (``run`` opens them after binding its
        listeners otherwise, so a start that fails leaves them untouched)."""
        self.config = config
        self.node_id = config.node_id
        self.stopping = False
        self.handlers: dict = {}  # bound once the services exist (load)
        self.locks = lock_dirs(config.log_dirs)
        try:
            cluster_id = check_meta_properties(config.log_dirs, self.node_id, config["cluster.id"] or None)
            first = config.advertised[0]
            self.metadata = LocalMetadata(
                find_metadata_file(config.log_dirs, _has_partition_dirs),
                self.node_id,
                BrokerInfo(self.node_id, first.host, first.port),
                cluster_id,
            )
        except BaseException:
            self._unlock()
            raise
        self.logs: LogManager | None = None
        self.replicas = ReplicaManager(self.node_id, config["producer.id.expiration.ms"])
        self.producer_ids = ProducerIds(self.metadata)
        self.fetch_sessions = FetchSessionCache()
        self.bound: list[tuple[str, int]] = []
        self.connections: set[Connection] = set()
        self.cleaning: set[tuple[str, int]] = set()
        self.creating: set[str] = set()  # topics whose logs are being made
        self.admin_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._stop = None
        if load:
            self.load()

    def load(self) -> None:
        """Open the logs: the first step that writes to the log dirs."""
        config = self.config
        for info in self.metadata.topics.values():
            self._drop_refused_overrides(info)
        write_meta_properties(config.log_dirs, self.node_id, self.metadata.cluster_id)
        self.metadata.save()
        known = {(t.name, p.index) for t in self.metadata.topics.values() for p in t.partitions}
        # Metadata first: the logs are opened with their topics' configs.
        self.logs = LogManager(config.log_dirs, self.log_config_for, known.__contains__, locks=self.locks)
        self.logs.on_dir_failure = self._log_dir_failed
        self.replicas.logs = self.logs
        for stray in self.logs.strays:
            log.warning("moved %s aside to %s: no topic has that partition", stray.name.rsplit(".", 1)[0], stray)
        for topic in self.metadata.topics.values():
            self._open_topic(topic)
        self.groups = GroupCoordinator(self)
        self.groups.load(now_ms())
        self.handlers = handlers.bind(self.services())

    def services(self) -> dict:
        """What handlers may ask for, by the name of their keyword-only parameter."""
        return {
            "config": self.config,
            "metadata": self.metadata,
            "groups": self.groups,
            "fetch_sessions": self.fetch_sessions,
            "replicas": self.replicas,
            "producer_ids": self.producer_ids,
        }

    def _drop_refused_overrides(self, info: TopicInfo) -> None:
        """A topic config stored by an older version that Kafka's rules now
        refuse (``flush.ms=-1``, say) would keep the broker from starting:
        drop it, with a warning, and let the broker's default apply."""
        base = self.config.log_config
        for key, value in list(info.configs.items()):
            try:
                LogConfig.from_props({key: value}, base=base)
            except ValueError as exc:
                log.warning("topic %s: dropping its stored config %s=%r: %s", info.name, key, value, exc)
                del info.configs[key]
        try:
            LogConfig.from_props(info.configs, base=base)
        except ValueError as exc:
            log.warning("topic %s: dropping its stored configs %s: %s", info.name, info.configs, exc)
            info.configs.clear()

    def _unlock(self) -> None:
        for lock in self.locks:
            lock.release()

    # -- topics ----------------------------------------------------------------

    def log_config_for(self, topic: str) -> LogConfig:
        info = self.metadata.topics.get(topic)
        return LogConfig.from_props(info.configs if info else {}, base=self.config.log_config)

    def _open_topic(self, topic: TopicInfo) -> None:
        cfg = self.log_config_for(topic.name)
        for p in topic.partitions:
            plog = self.logs.get(topic.name, p.index) or self.logs.create(topic.name, p.index, cfg)
            self.replicas.add(topic.name, p.index, plog, p)

    def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None) -> TopicInfo:
        """Create a small topic at once (auto-creation, internal topics); the
        caller has validated name, count and configs. Raises StorageFailure,
        with nothing left behind, when its metadata or logs cannot be made."""
        info = self.metadata.create_topic(name, partitions, configs, publish=False)
        try:
            parts, paths, cfg = self._plan_logs(info, 0)
            logs = open_new_logs(paths, cfg)
        except OSError as exc:
            raise self._give_up(info, exc) from exc
        return self._publish(info, parts, logs)

    async def create_topic_async(self, name: str, partitions: int, configs: dict[str, str] | None = None) -> TopicInfo:
        """Create a topic whose logs are made in a worker thread, so that
        thousands of partitions do not stall the event loop; it becomes
        visible, whole, when they are all made. The name stays reserved
        (``creating``) meanwhile."""
        self.creating.add(name)
        try:
            info = self.metadata.create_topic(name, partitions, configs, publish=False)
            done = await self._make_logs_off_loop(info, 0)
            assert done is not None  # nothing can delete a topic not yet visible
            return done
        finally:
            self.creating.discard(name)

    async def add_partitions(self, name: str, total: int) -> TopicInfo | None:
        """Grow a topic to ``total`` partitions (logs made off the loop);
        None if the topic was deleted meanwhile. Callers serialise with
        ``admin_lock``; the name is reserved so that a deletion and a new
        topic of the same name cannot meet the logs being made."""
        first = len(self.metadata.topics[name].partitions)
        self.creating.add(name)
        try:
            grown = self.metadata.add_partitions(name, total)
            return await self._make_logs_off_loop(grown, first)
        finally:
            self.creating.discard(name)

    async def _make_logs_off_loop(self, info: TopicInfo, first: int) -> TopicInfo | None:
        try:
            parts, paths, cfg = self._plan_logs(info, first)
            logs = await trio.to_thread.run_sync(open_new_logs, paths, cfg)
        except OSError as exc:
            raise self._give_up(info, exc) from exc
        if self.metadata.pending.get(info.name) is not info:  # deleted meanwhile
            discard_new_logs(logs)
            return None
        return self._publish(info, parts, logs)

    def _plan_logs(self, info: TopicInfo, first: int):
        """The partitions from ``first``, their new log paths and their config."""
        parts = info.partitions[first:]
        dirs = self.logs.place(len(parts))
        paths = [d / f"{info.name}-{p.index}" for d, p in zip(dirs, parts)]
        return parts, paths, LogConfig.from_props(info.configs, base=self.config.log_config)

    def _publish(self, info: TopicInfo, parts, logs) -> TopicInfo:
        for p, plog in zip(parts, logs):
            self.logs.adopt((info.name, p.index), plog)
            self.replicas.add(info.name, p.index, plog, p)
        self.metadata.publish(info.name)
        if parts and parts[0].index == 0:
            log.info("created topic %s with %d partitions", info.name, len(parts))
        else:
            log.info("topic %s now has %d partitions", info.name, len(info.partitions))
        return info

    def _give_up(self, info: TopicInfo, exc: OSError) -> StorageFailure:
        log.error("cannot create the logs of %s: %s", info.name, exc)
        self.metadata.abandon(info.name)
        return StorageFailure(f"cannot create the logs of {info.name}: {exc}")

    def auto_create_topic(self, name: str) -> TopicInfo | None:
        """Kafka's auto-creation: never of an illegal name, of a topic being
        made, or of ``__cluster_metadata`` (KRaft's own log, not a topic)."""
        if not self.config["auto.create.topics.enable"] or topic_name_problem(name) or name in self.creating:
            return None
        if name == INTERNAL_METADATA_TOPIC:
            return None
        try:
            return self.create_topic(name, self.config["num.partitions"])
        except StorageFailure:
            return None  # logged; the client sees an unknown topic and retries

    def delete_topic(self, name: str) -> TopicInfo:
        """Forget a topic: gone from the metadata, its partitions no longer
        served, its producer state dropped. Its logs stay open, and its
        name reserved, until ``detach_logs`` has closed them and renamed
        their directories."""
        info = self.metadata.delete_topic(name)
        self.creating.add(name)
        for p in info.partitions:
            self.replicas.remove(name, p.index)
        log.info("deleted topic %s", name)
        return info

    async def detach_logs(self, info: TopicInfo) -> None:
        """Close a deleted topic's logs and rename their directories
        ``*-delete`` a chunk at a time, then have their files removed in a
        worker thread; the name is free again once all are renamed."""
        detached = []
        try:
            for n, p in enumerate(info.partitions, 1):
                path = self.logs.detach(info.name, p.index)
                if path is not None:
                    detached.append(path)
                if n % DETACH_CHUNK == 0:
                    await trio.lowlevel.checkpoint()
        finally:
            self.creating.discard(info.name)
            self.remove_later(detached)

    def remove_later(self, paths: list) -> None:
        """Remove detached directories in a worker thread (at once when the
        broker is not running)."""
        if self._nursery is None:
            remove_detached(paths)
        elif paths:
            self._nursery.start_soon(trio.to_thread.run_sync, remove_detached, paths)

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        self.metadata.set_topic_configs(name, configs)
        self.logs.update_config(name, self.log_config_for(name))

    # Kept for the group coordinator and tests until they go through
    # ``replicas``.
    @property
    def partitions(self) -> dict[tuple[str, int], Partition]:
        return self.replicas.partitions

    def partition(self, topic: str, index: int) -> Partition | None:
        return self.replicas.partitions.get((topic, index))

    # -- life cycle ------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run`` to shut down gracefully (thread-unsafe: call from the Trio thread)."""
        if self._stop is not None:
            self._stop.set()

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until stopped; raises LogDirsFailed if it stopped because
        every log directory failed."""
        self._stop = trio.Event()
        grace = self.config["shutdown.grace.ms"] / 1000
        try:
            async with trio.open_nursery() as root:
                self._nursery = root
                listeners = []
                for lst in self.config.listeners:
                    try:
                        listeners += await trio.open_tcp_listeners(lst.port, host=lst.host)
                    except OSError as exc:
                        raise ListenerError(f"cannot listen on {lst.url()}: {exc.strerror or exc}") from exc
                self.bound = [ls.socket.getsockname()[:2] for ls in listeners]
                if self.logs is None:
                    self.load()
                if not self.logs.online_dirs:
                    raise LogDirsFailed(self._all_dirs_failed())
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
                    root.start_soon(self.replicas.run)
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
            self._nursery = None
            if self.logs is None:
                self._unlock()
            else:
                self._background("producer snapshots", self.replicas.snapshot_producers)
                self._background("closing the logs", self.logs.close)  # also gives up the dirs' locks
                log.info("stopped; logs flushed")
        if self.logs is not None and not self.logs.online_dirs:
            raise LogDirsFailed(self._all_dirs_failed())

    def _log_dir_failed(self, d, cause: str, partitions: list) -> None:
        """The log manager took ``d`` offline (an I/O error there)."""
        log.error(
            "log directory %s failed (%s): it is offline until a restart, with the %d partitions in it",
            d,
            cause,
            len(partitions),
        )
        if not self.logs.online_dirs:
            log.critical("stopping the broker: %s", self._all_dirs_failed())
            self.stop()

    def _all_dirs_failed(self) -> str:
        return "all log dirs in " + ", ".join(str(d) for d in self.logs.log_dirs) + " have failed"

    def _background(self, what: str, fn, *args):
        """Run one step of background work. I/O errors are dealt with where
        they happen (their log dir goes offline); anything else here is a
        bug, logged with its traceback, and the work goes on next time."""
        try:
            return fn(*args)
        except Exception:
            log.exception("%s failed", what)
            return None

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
            self._background("flush", self.logs.flush_dirty)
            now = trio.current_time()
            if now >= next_retention:
                next_retention = now + retention_every
                deleted = self._background("retention", self.logs.delete_expired, now_ms(), frozenset(self.cleaning))
                if deleted:
                    log.info("retention deleted %d segments", deleted)
            if now >= next_checkpoint:
                next_checkpoint = now + checkpoint_every
                self._background("checkpoint", self.logs.checkpoint)
                self._background("producer snapshots", self.replicas.checkpoint_producers)

    async def _compact(self) -> None:
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
