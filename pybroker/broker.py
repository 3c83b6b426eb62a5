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
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.storage import cleaner
from pybroker.storage.config import LogConfig
from pybroker.storage.dirs import check_meta_properties, lock_dirs, write_meta_properties
from pybroker.storage.log import parse_partition_dir
from pybroker.storage.manager import LogManager, discard_new_logs, open_new_logs, remove_detached

from . import handlers
from .cluster.admin import topic_name_problem
from .cluster.local import LocalMetadata, find_metadata_file
from .cluster.model import BrokerInfo, TopicInfo
from .cluster.placement import assign_replicas
from .config import BrokerConfig
from .fetch_sessions import FetchSessionCache
from .groups.coordinator import GroupCoordinator
from .producer_ids import ProducerIds
from .replica import ReplicaManager
from .server import Connection, ServerContext, close_idle_connections
from .topic_configs import INTERNAL_METADATA_TOPIC

log = logging.getLogger("pybroker")

# Partition logs closed and renamed between two turns of the event loop.
DETACH_CHUNK = 100

__all__ = ["Broker", "topic_name_problem"]


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
        for info in self.metadata.all_topics():
            self._drop_refused_overrides(info)
        write_meta_properties(config.log_dirs, self.node_id, self.metadata.cluster_id)
        self.metadata.save()
        known = {(t.name, p.index) for t in self.metadata.all_topics() for p in self._hosted(t.partitions)}
        # Metadata first: the logs are opened with their topics' configs. A
        # log of a partition this node is not a replica of is a stray, as
        # Kafka's (KIP-858) are: moved aside, its data kept.
        self.logs = LogManager(config.log_dirs, self.log_config_for, known.__contains__, locks=self.locks)
        self.logs.on_dir_failure = self._log_dir_failed
        self.replicas.logs = self.logs
        for stray in self.logs.strays:
            log.warning(
                "moved %s aside to %s: no topic has that partition on broker %d",
                stray.name.rsplit(".", 1)[0],
                stray,
                self.node_id,
            )
        for topic in self.metadata.all_topics():
            self._open_topic(topic)
        self.groups = GroupCoordinator(**self.group_services())
        self.groups.load(now_ms())
        self.handlers = handlers.bind(self.services())
        # What the connections get of the broker.
        self.server = ServerContext.from_config(config, self.handlers)

    def group_services(self) -> dict:
        """What the group coordinator is built from."""
        return {
            "config": self.config,
            "replicas": self.replicas,
            "metadata": self.metadata,
            "create_topic": self.create_topic,
        }

    def services(self) -> dict:
        """What handlers may ask for, by the name of their keyword-only parameter."""
        return {
            "config": self.config,
            "metadata": self.metadata,
            "groups": self.groups,
            "fetch_sessions": self.fetch_sessions,
            # The Broker itself until topic administration has a home of its
            # own; handlers see only the TopicAdmin protocol.
            "topics": self,
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
        info = self.metadata.topic(topic)
        return LogConfig.from_props(info.configs if info else {}, base=self.config.log_config)

    def _hosted(self, partitions):
        """The partitions whose replicas include this node: the ones it holds."""
        return [p for p in partitions if self.node_id in p.replicas]

    def _open_topic(self, topic: TopicInfo) -> None:
        cfg = self.log_config_for(topic.name)
        for p in self._hosted(topic.partitions):
            plog = self.logs.get(topic.name, p.index) or self.logs.create(topic.name, p.index, cfg)
            self.replicas.add(topic.name, p.index, plog, p)

    def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None) -> TopicInfo:
        """Create a small topic at once (auto-creation, internal topics); the
        caller has validated name, count and configs. Raises
        KafkaError(KAFKA_STORAGE_ERROR), with nothing left behind, when its
        metadata or logs cannot be made. One replica each: replication
        factors for these topics come with cluster mode."""
        assignment = assign_replicas([b.node_id for b in self.metadata.brokers()], partitions, 1)
        info = self.metadata.create_topic(name, assignment, configs, publish=False)
        try:
            parts, paths, cfg = self._plan_logs(info, 0)
            logs = open_new_logs(paths, cfg)
        except OSError as exc:
            raise self._give_up(info, exc) from exc
        return self._publish(info, 0, parts, logs)

    async def create_topic_async(
        self, name: str, assignment: Sequence[Sequence[int]], configs: dict[str, str] | None = None
    ) -> TopicInfo:
        """Create a topic whose logs are made in a worker thread, so that
        thousands of partitions do not stall the event loop; it becomes
        visible, whole, when they are all made. The name stays reserved
        (``creating``) meanwhile."""
        self.creating.add(name)
        try:
            info = self.metadata.create_topic(name, assignment, configs, publish=False)
            done = await self._make_logs_off_loop(info, 0)
            assert done is not None  # nothing can delete a topic not yet visible
            return done
        finally:
            self.creating.discard(name)

    async def add_partitions(self, name: str, assignments: Sequence[Sequence[int]]) -> TopicInfo | None:
        """Grow a topic by one partition per assignment (logs made off the
        loop); None if the topic was deleted meanwhile. Callers serialise
        with ``admin_lock``; the name is reserved so that a deletion and a
        new topic of the same name cannot meet the logs being made."""
        first = len(self.metadata.topic(name).partitions)
        self.creating.add(name)
        try:
            grown = self.metadata.add_partitions(name, assignments)
            return await self._make_logs_off_loop(grown, first)
        finally:
            self.creating.discard(name)

    async def _make_logs_off_loop(self, info: TopicInfo, first: int) -> TopicInfo | None:
        try:
            parts, paths, cfg = self._plan_logs(info, first)
            logs = await trio.to_thread.run_sync(open_new_logs, paths, cfg)
        except OSError as exc:
            raise self._give_up(info, exc) from exc
        if self.metadata.pending_topic(info.name) is not info:  # deleted meanwhile
            discard_new_logs(logs)
            return None
        return self._publish(info, first, parts, logs)

    def _plan_logs(self, info: TopicInfo, first: int):
        """This node's partitions from ``first``, their new log paths and their config."""
        parts = self._hosted(info.partitions[first:])
        dirs = self.logs.place(len(parts))
        paths = [d / f"{info.name}-{p.index}" for d, p in zip(dirs, parts)]
        return parts, paths, LogConfig.from_props(info.configs, base=self.config.log_config)

    def _publish(self, info: TopicInfo, first_index: int, parts, logs) -> TopicInfo:
        for p, plog in zip(parts, logs):
            self.logs.adopt((info.name, p.index), plog)
            self.replicas.add(info.name, p.index, plog, p)
        self.metadata.publish(info.name)
        if first_index == 0:
            log.info("created topic %s with %d partitions", info.name, len(info.partitions))
        else:
            log.info("topic %s now has %d partitions", info.name, len(info.partitions))
        return info

    def _give_up(self, info: TopicInfo, exc: OSError) -> KafkaError:
        log.error("cannot create the logs of %s: %s", info.name, exc)
        self.metadata.abandon(info.name)
        return KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, f"cannot create the logs of {info.name}: {exc}")

    def auto_create_topic(self, name: str) -> TopicInfo | None:
        """Kafka's auto-creation: never of an illegal name, of a topic being
        made, or of ``__cluster_metadata`` (KRaft's own log, not a topic)."""
        if not self.config["auto.create.topics.enable"] or topic_name_problem(name) or name in self.creating:
            return None
        if name == INTERNAL_METADATA_TOPIC:
            return None
        try:
            return self.create_topic(name, self.config["num.partitions"])
        except KafkaError:
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

    def reserved_names(self) -> AbstractSet[str]:
        return self.creating

    def reserve_names(self, names: Sequence[str]) -> None:
        self.creating.update(names)

    def release_names(self, names: Sequence[str]) -> None:
        self.creating.difference_update(names)

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        self.metadata.set_topic_configs(name, configs)
        self.logs.update_config(name, self.log_config_for(name))

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
                    if self.server.max_idle_ms > 0:
                        root.start_soon(close_idle_connections, self.server)
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
                    self.server.stop_reading()
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
        self.metadata.this_broker = BrokerInfo(self.node_id, adv.host, port)

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
            nursery.start_soon(Connection(self.server, stream).serve)

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
