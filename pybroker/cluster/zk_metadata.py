"""The cluster metadata in cluster mode: a cache of ZooKeeper, kept by watches.

``ZkMetadata`` implements ``MetadataView`` with the same records as the
single node's ``LocalMetadata`` (``model``), so handlers and services know
nothing of ZooKeeper. What it holds, and where from (Kafka's layout,
``znodes``):

* live brokers: the children of ``/brokers/ids`` and each registration
  (its czxid is the broker's epoch);
* the controller: ``/controller``;
* topics: the children of ``/brokers/topics``, each topic znode (replica
  assignment, topic id) and each partition's state znode;
* topic configs: ``/config/topics/<t>``, re-read when a change
  notification (``/config/changes/config_change_N``) names the topic,
  as Kafka's ZkConfigManager does (config znodes themselves are not
  watched; ``zk_configs``).

Theory of operation. Every watch callback only marks what changed as
dirty and wakes one task (``run``), which re-reads the dirty znodes —
re-arming their watches as it reads — builds the next view, hands it to
the ``host`` (the partitions this broker holds: ``zk_state``) and then
publishes it. Nothing ever blocks the Trio thread, and ZooKeeper's order
of events is kept: one pass at a time. A partition state replaces the
cached one only if its (leader epoch, znode version) is newer; a topic
whose id changed is a new topic (the old one was deleted and the name
reused).

A topic znode without a topic id (written by a tool older than Kafka
2.8) gets one here, by a versioned rewrite of the znode as Kafka's
controller does (``KafkaController.setTopicIds``); whichever broker
writes first wins, the others re-read it.

Sessions. "suspended": nothing changes, the cache keeps serving (a
ZooKeeper restart within the session must cause nothing). "expired": the
host drops every leadership at once and this broker leaves the live
brokers it reports; when the new session is up the task re-registers the
broker (``on_new_session``), re-reads everything, re-arms every watch and
has the host reconcile every partition with what ZooKeeper says. A read
that fails with a lost connection is retried once connected again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from pybroker.zk import (
    BadVersionError,
    ConnectionLossError,
    NodeExistsError,
    NoNodeError,
    SessionExpiredError,
    ZkClient,
    ZkEvent,
)

from . import znodes
from .metadata import TopicTable
from .model import BrokerInfo, PartitionInfo, PartitionState, TopicInfo
from .zk_configs import ConfigChanges, gather

log = logging.getLogger("pybroker.cluster")

# A partition whose state znode is not written yet (the controller has not
# got to it): no leader, nothing in sync.
NO_STATE = PartitionState(-1, -1, [], 0, -1)

_LOST = (ConnectionLossError, SessionExpiredError)


@dataclass
class Update:
    """One pass's outcome, for the host, before it is published."""

    topics: dict[str, TopicInfo]  # the view about to be published
    changed: set[str] = field(default_factory=set)  # new topics, new partitions, new states or configs
    configs: set[str] = field(default_factory=set)  # topics whose configs changed
    deleted: list[TopicInfo] = field(default_factory=list)  # gone, or replaced by a new topic of that name
    full: bool = False  # everything was re-read: reconcile every partition


class Host:
    """What the cache tells the partitions this broker holds (``zk_state``)."""

    async def prepare(self, update: Update) -> None:
        """Before ``update`` is published: logs made, replicas added or
        removed, roles and epochs changed."""

    def settle(self, update: Update) -> None:
        """After it is published (group partitions loaded or unloaded)."""

    def session_expired(self) -> None:
        """Drop every leadership at once."""


class ZkMetadata(TopicTable):
    """MetadataView over ZooKeeper (see the module docstring)."""

    def __init__(self, zk: ZkClient, node_id: int, listener: str | None = None):
        self.zk = zk
        self.node_id = node_id
        # The inter-broker listener: a broker's ``host`` and ``port`` are
        # its address there (other endpoints are kept for clients).
        self.listener = listener
        self._cluster_id = ""
        self._controller = -1
        self._brokers: dict[int, znodes.BrokerRegistration] = {}
        self._topics: dict[str, TopicInfo] = {}
        self._by_id: dict[uuid.UUID, TopicInfo] = {}
        self.host: Host = Host()
        # Called (in the task) once a new session replaces an expired one,
        # before everything is re-read: the broker registers again.
        self.on_new_session: Callable[[], Awaitable[None]] | None = None
        self.config_changes = ConfigChanges(zk)
        # /config/users/<user>: SCRAM credentials (and quotas) by user,
        # re-read when a change notification names the user.
        self.users: dict[str, dict[str, str]] = {}
        self._dirty_users: set[str] = set()
        # /config/clients/<client-id> and /config/users/<user>/clients/<client-id>:
        # quotas, "<default>" for every one; ``on_entity_configs`` is told
        # when any of these three tables changed.
        self.clients: dict[str, dict[str, str]] = {}
        self.user_clients: dict[str, dict[str, dict[str, str]]] = {}
        self._dirty_clients: set[str] = set()
        self._dirty_user_clients: set[tuple[str, str]] = set()
        self.on_entity_configs: Callable[[], None] | None = None
        # Bumped, and ``_published`` set and replaced, after every pass.
        self.generation = 0
        self._published = trio.Event()
        # What the watches marked for the next pass.
        self._dirty_controller = self._dirty_brokers = self._dirty_topics = self._dirty_changes = True
        self._dirty_broker: set[int] = set()
        self._dirty_topic: set[str] = set()
        self._dirty_state: set[tuple[str, int]] = set()
        self._full = True
        self._new_session = False
        self._wake = trio.Event()
        self._connected = trio.Event()
        self._connected.set()
        zk.add_session_listener(self._session_changed)

    # -- MetadataView ------------------------------------------------------------

    @property
    def cluster_id(self) -> str:
        return self._cluster_id

    @cluster_id.setter
    def cluster_id(self, value: str) -> None:
        self._cluster_id = value

    @property
    def controller_id(self) -> int:
        return self._controller

    def broker(self, node_id: int) -> BrokerInfo | None:
        reg = self._brokers.get(node_id)
        return None if reg is None else reg.info

    def brokers(self) -> list[BrokerInfo]:
        return [self._brokers[n].info for n in sorted(self._brokers)]

    def broker_epoch(self, node_id: int) -> int | None:
        """The broker's epoch: the czxid of its registration."""
        reg = self._brokers.get(node_id)
        return None if reg is None else reg.epoch

    # -- waiting for the view ------------------------------------------------------

    async def wait_until(self, condition: Callable[[], bool], deadline: float | None) -> bool:
        """Until ``condition()`` holds after a pass (True), or ``deadline``
        passes (False)."""
        with trio.move_on_at(float("inf") if deadline is None else deadline):
            while not condition():
                await self._published.wait()
            return True
        return condition()

    # -- watches: mark and wake ----------------------------------------------------

    def _wake_up(self) -> None:
        self._wake.set()

    def _on_controller(self, event: ZkEvent) -> None:
        self._dirty_controller = True
        self._wake_up()

    def _on_broker_ids(self, event: ZkEvent) -> None:
        self._dirty_brokers = True
        self._wake_up()

    def _on_broker(self, event: ZkEvent) -> None:
        try:
            self._dirty_broker.add(int(event.path.rsplit("/", 1)[1]))
        except ValueError:
            return
        self._wake_up()

    def _on_topics(self, event: ZkEvent) -> None:
        self._dirty_topics = True
        self._wake_up()

    def _on_topic(self, event: ZkEvent) -> None:
        self._dirty_topic.add(event.path.rsplit("/", 1)[1])
        self._wake_up()

    def _on_state(self, event: ZkEvent) -> None:
        # .../brokers/topics/<t>/partitions/<p>/state
        parts = event.path.rsplit("/", 5)
        try:
            self._dirty_state.add((parts[-4], int(parts[-2])))
        except (IndexError, ValueError):
            return
        self._wake_up()

    def _on_config_changes(self, event: ZkEvent) -> None:
        self._dirty_changes = True
        self._wake_up()

    def _session_changed(self, state: str) -> None:
        if state == "suspended":
            log.warning("lost the connection to ZooKeeper; serving from the cached metadata meanwhile")
            self._disconnected()
        elif state == "expired":
            log.error("the ZooKeeper session expired: every leadership here is dropped until registered again")
            self._disconnected()
            self._brokers.pop(self.node_id, None)
            self.host.session_expired()
            self._new_session = True
        elif state == "connected":
            self._connected.set()
            if self._new_session:
                self._full = True
            self._wake_up()

    def _disconnected(self) -> None:
        # A suspension followed by an expiry is one disconnection: the run
        # task may already wait on the event the first made, and the next
        # "connected" must set that one.
        if self._connected.is_set():
            self._connected = trio.Event()

    def mark_all(self) -> None:
        """Re-read everything at the next pass."""
        self._full = True
        self._wake_up()

    # -- the task ------------------------------------------------------------------------

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Pass after pass, forever; ``task_status.started`` after the first."""
        started = False
        while True:
            if started:
                await self._wake.wait()
            self._wake = trio.Event()
            await self._connected.wait()
            try:
                await self.refresh()
            except _LOST:
                log.info("ZooKeeper connection lost during a metadata read; retrying once connected")
                self._full = True  # what the pass took is lost with it: read it all again
                self._wake_up()
                await trio.sleep(0.05)  # the client notices the loss before it reconnects
                continue
            if not started:
                started = True
                task_status.started()

    async def refresh(self) -> None:
        """One pass: read what is dirty, prepare the host, publish."""
        if self._new_session and self.on_new_session is not None:
            await self.on_new_session()
        self._new_session = False
        update = await self._read()
        await self.host.prepare(update)
        self._publish(update)
        self.host.settle(update)

    def _publish(self, update: Update) -> None:
        self._topics = update.topics
        self._by_id = {t.topic_id: t for t in update.topics.values()}
        self.generation += 1
        published, self._published = self._published, trio.Event()
        published.set()

    # -- reading ---------------------------------------------------------------------

    async def _read(self) -> Update:
        full, self._full = self._full, False
        if full:
            self._dirty_controller = self._dirty_brokers = self._dirty_topics = self._dirty_changes = True
        if self._dirty_controller:
            self._dirty_controller = False
            await self._read_controller()
        if self._dirty_brokers or self._dirty_broker:
            await self._read_brokers(full)
        update = Update(dict(self._topics), full=full)
        await self._read_topics(update, full)
        await self._read_configs(update, full)
        await self._read_users(full)
        return update

    async def _read_controller(self) -> None:
        try:
            data, _ = await self.zk.get(znodes.CONTROLLER, watch=self._on_controller)
        except NoNodeError:
            if await self.zk.exists(znodes.CONTROLLER, watch=self._on_controller) is not None:
                self._dirty_controller = True
                self._wake_up()
            self._controller = -1
            return
        try:
            self._controller = znodes.decode_controller(data)
        except ValueError as exc:
            log.warning("ignoring %s: %s", znodes.CONTROLLER, exc)
            self._controller = -1

    async def _read_brokers(self, full: bool) -> None:
        dirty, self._dirty_broker = self._dirty_broker, set()
        if self._dirty_brokers:
            self._dirty_brokers = False
            children = await self.zk.get_children(znodes.BROKER_IDS, watch=self._on_broker_ids)
            ids = set()
            for child in children:
                try:
                    ids.add(int(child))
                except ValueError:
                    log.warning("ignoring %s/%s: not a broker id", znodes.BROKER_IDS, child)
            for gone in set(self._brokers) - ids:
                del self._brokers[gone]
                log.info("broker %d left the cluster", gone)
            dirty |= ids if full else ids - set(self._brokers)
        read = await gather([self._read_broker(n) for n in sorted(dirty)])
        for node_id, reg in zip(sorted(dirty), read):
            old = self._brokers.get(node_id)
            if reg is None:
                self._brokers.pop(node_id, None)
            else:
                self._brokers[node_id] = reg
                if old is None or old.epoch != reg.epoch:
                    log.info("broker %d at %s:%d (epoch %d) is live", node_id, reg.host, reg.port, reg.epoch)

    async def _read_broker(self, node_id: int) -> znodes.BrokerRegistration | None:
        try:
            data, stat = await self.zk.get(znodes.broker_path(node_id), watch=self._on_broker)
        except NoNodeError:
            return None
        try:
            return znodes.decode_broker(data, stat.czxid, node_id, self.listener)
        except ValueError as exc:
            log.warning("ignoring the registration of broker %d: %s", node_id, exc)
            return None

    async def _read_topics(self, update: Update, full: bool) -> None:
        topics = update.topics
        to_read = set(self._dirty_topic)
        self._dirty_topic.clear()
        if self._dirty_topics:
            self._dirty_topics = False
            names = set(await self.zk.get_children(znodes.BROKER_TOPICS, watch=self._on_topics))
            for gone in set(topics) - names:
                update.deleted.append(topics.pop(gone))
            to_read |= names if full else names - set(topics)
        states = set(self._dirty_state)
        self._dirty_state.clear()
        names = sorted(to_read)
        read = await gather([self._read_topic(name) for name in names])
        for name, found in zip(names, read):
            old = topics.get(name)
            if found is None:  # gone (its deletion also shows in the children)
                if old is not None:
                    update.deleted.append(topics.pop(name))
                continue
            if found is _NOT_YET:
                continue
            topic_id, assignment = found
            if old is not None and old.topic_id != topic_id:
                update.deleted.append(topics.pop(name))
                old = None
            partitions = [
                PartitionInfo(
                    p, list(replicas), old.partitions[p].state if old and p < len(old.partitions) else NO_STATE
                )
                for p, replicas in sorted(assignment.items())
            ]
            if old is None or full:
                states |= {(name, p.index) for p in partitions}
            else:
                states |= {(name, p.index) for p in partitions[len(old.partitions) :]}
            if old is None or [p.replicas for p in old.partitions] != [p.replicas for p in partitions]:
                topics[name] = TopicInfo(name, topic_id, partitions, old.configs if old else {})
                update.changed.add(name)
                if old is None:
                    update.configs.add(name)  # its configs are read below
        wanted = sorted((t, p) for t, p in states if t in topics and p < len(topics[t].partitions))
        read = await gather([self._read_state(t, p) for t, p in wanted])
        for (name, index), state in zip(wanted, read):
            info = topics[name]
            old = info.partitions[index]
            if state is None or (state.leader_epoch, state.version) <= (old.state.leader_epoch, old.state.version):
                continue
            if info is self._topics.get(name):  # published: never changed in place
                info = topics[name] = TopicInfo(name, info.topic_id, list(info.partitions), info.configs)
            info.partitions[index] = PartitionInfo(index, old.replicas, state)
            update.changed.add(name)

    async def _read_topic(self, name: str):
        """(topic id, assignment); None when the znode is gone; _NOT_YET
        when it has no topic id yet (one is being given to it)."""
        path = znodes.topic_path(name)
        try:
            data, stat = await self.zk.get(path, watch=self._on_topic)
        except NoNodeError:
            return None
        try:
            znode = znodes.decode_topic(data)
        except ValueError as exc:
            log.warning("ignoring topic %s: %s", name, exc)
            return _NOT_YET
        if not znode.assignment or sorted(znode.assignment) != list(range(len(znode.assignment))):
            log.warning("ignoring topic %s: its partitions are not numbered 0..n-1: %s", name, sorted(znode.assignment))
            return _NOT_YET
        if znode.topic_id is None:
            topic_id = uuid.uuid4()
            data = znodes.encode_topic(topic_id, znode.assignment, znode.adding, znode.removing)
            try:
                await self.zk.set(path, data, version=stat.version)
                log.info("gave topic %s the id %s", name, znodes.topic_id_text(topic_id))
            except (BadVersionError, NoNodeError):
                pass  # someone else did, or it is gone: the watch says which
            return _NOT_YET
        return znode.topic_id, znode.assignment

    async def _read_state(self, topic: str, index: int) -> PartitionState | None:
        path = znodes.partition_state_path(topic, index)
        for _ in range(2):
            try:
                data, stat = await self.zk.get(path, watch=self._on_state)
            except NoNodeError:
                # Not written yet: be told when it is.
                if await self.zk.exists(path, watch=self._on_state) is None:
                    return None
                continue
            try:
                return znodes.decode_partition_state(data, stat.version)
            except ValueError as exc:
                log.warning("ignoring the state of %s-%d: %s", topic, index, exc)
                return None
        return None

    async def _read_configs(self, update: Update, full: bool) -> None:
        topics = update.topics
        names = set(update.configs)
        if self._dirty_changes:
            self._dirty_changes = False
            for entity in await self.config_changes.read(self._on_config_changes):
                kind, _, name = entity.partition("/")
                if kind == "topics":
                    names.add(name)
                elif kind == "users" and "/" not in name:
                    self._dirty_users.add(znodes.desanitize(name))
                elif kind == "users" and name.count("/") == 2 and name.split("/")[1] == "clients":
                    user, _, client = name.split("/")
                    self._dirty_user_clients.add((znodes.desanitize(user), znodes.desanitize(client)))
                elif kind == "clients" and "/" not in name:
                    self._dirty_clients.add(znodes.desanitize(name))
        if full:
            names |= set(topics)
        names = sorted(n for n in names if n in topics)
        read = await gather([self._read_config(n) for n in names])
        for name, configs in zip(names, read):
            info = topics[name]
            if configs == info.configs and name not in update.configs:
                continue
            if info is self._topics.get(name):  # published: never changed in place
                info = topics[name] = TopicInfo(name, info.topic_id, list(info.partitions), configs)
            else:
                info.configs = configs
            update.configs.add(name)
            update.changed.add(name)

    async def _read_users(self, full: bool) -> None:
        dirty, self._dirty_users = self._dirty_users, set()
        dirty_clients, self._dirty_clients = self._dirty_clients, set()
        dirty_pairs, self._dirty_user_clients = self._dirty_user_clients, set()
        if full:
            children = await self._children(znodes.CONFIG_USERS)
            dirty |= {znodes.desanitize(c) for c in children} | set(self.users)
            dirty_clients |= {znodes.desanitize(c) for c in await self._children(znodes.CONFIG_CLIENTS)}
            dirty_clients |= set(self.clients)
            users = sorted({znodes.desanitize(c) for c in children})
            for user, names in zip(users, await gather([self._children(znodes.user_clients_path(u)) for u in users])):
                dirty_pairs |= {(user, znodes.desanitize(c)) for c in names}
            dirty_pairs |= {(u, c) for u, by_client in self.user_clients.items() for c in by_client}
        if not (dirty or dirty_clients or dirty_pairs):
            return
        names = sorted(dirty)
        read = await gather([self._read_entity(znodes.user_config_path(n), f"user {n}") for n in names])
        for name, configs in zip(names, read):
            if configs:
                self.users[name] = configs
            else:
                self.users.pop(name, None)
        clients = sorted(dirty_clients)
        read = await gather([self._read_entity(znodes.client_config_path(c), f"client id {c}") for c in clients])
        for name, configs in zip(clients, read):
            if configs:
                self.clients[name] = configs
            else:
                self.clients.pop(name, None)
        pairs = sorted(dirty_pairs)
        read = await gather([
            self._read_entity(znodes.user_client_config_path(u, c), f"user {u} client id {c}") for u, c in pairs
        ])
        for (user, client), configs in zip(pairs, read):
            if configs:
                self.user_clients.setdefault(user, {})[client] = configs
            elif client in self.user_clients.get(user, {}):
                del self.user_clients[user][client]
                if not self.user_clients[user]:
                    del self.user_clients[user]
        if self.on_entity_configs is not None:
            self.on_entity_configs()

    async def _children(self, path: str) -> list[str]:
        try:
            return await self.zk.get_children(path)
        except NoNodeError:
            return []

    async def _read_entity(self, path: str, what: str) -> dict[str, str]:
        try:
            data, _ = await self.zk.get(path)
        except NoNodeError:
            return {}
        try:
            return znodes.decode_topic_config(data)
        except ValueError as exc:
            log.warning("ignoring the configs of %s: %s", what, exc)
            return {}

    async def _read_config(self, name: str) -> dict[str, str]:
        try:
            data, _ = await self.zk.get(znodes.topic_config_path(name))
        except NoNodeError:
            return {}
        try:
            return znodes.decode_topic_config(data)
        except ValueError as exc:
            log.warning("ignoring the configs of topic %s: %s", name, exc)
            return {}


_NOT_YET = object()


__all__ = ["Host", "NodeExistsError", "Update", "ZkMetadata"]
