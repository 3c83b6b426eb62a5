"""The composition root: the broker builds its services, wires them
together and runs them.

Services: the metadata (cluster/), the replica manager (replica/), topic
administration (topics.py), the group coordinator (groups/), producer
ids, fetch sessions, the logs' background work (log_tasks.py); handlers
are bound to the ones they name, and connections get a ServerContext.
Nothing else imports this module: each service is given what it uses.

Cluster mode (``zookeeper.connect`` set) swaps in the ZooKeeper-backed
services (cluster/zk_*.py): the metadata is a cache of ZooKeeper, topic
administration writes ZooKeeper, producer-id blocks come from it, the
controller runs in the broker, and followers copy their leaders
(replica/fetcher.py, one task per leader). ``run`` then joins the
cluster after binding its listeners and before serving: it connects (ZkConnectTimeout
after ``zookeeper.connection.timeout.ms``), creates Kafka's persistent
znodes, reads or creates the cluster id and checks the log dirs against
it, registers the broker, reads the whole metadata, opens the logs of the
partitions assigned here (moving others aside), and starts the metadata
task and the controller. Leaders write their ISR changes themselves
(cluster/zk_isr.py) and check every ``replica.lag.time.max.ms``/2 for
followers to drop. Without ``zookeeper.connect`` nothing of this
happens and ZooKeeper is not needed.

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

import logging
import os

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.storage.dirs import check_meta_properties, lock_dirs, write_meta_properties
from pybroker.storage.log import parse_partition_dir
from pybroker.storage.manager import LogManager
from pybroker.storage.partition_metadata import uuid_text

from . import __version__, handlers, oauth_keys
from .acl import Authorizer, authorizer_settings
from .cluster.admin import topic_name_problem
from .cluster.client_quotas import LocalClientQuotas
from .cluster.controller_state import SingleNodeElections
from .cluster.local import LocalMetadata, find_metadata_file
from .cluster.model import BrokerInfo
from .cluster.users import LocalUsers
from .config import BrokerConfig
from .fetch_sessions import FetchSessionCache
from .groups.coordinator import GroupCoordinator
from .log_tasks import LogTasks, background, now_ms
from .logs import recovery_summary
from .metrics.endpoint import MetricsEndpoint, MetricsListenerError
from .producer_ids import ProducerIds
from .quotas import ClientQuotas
from .replica import ReplicaManager, Role
from .sasl import SaslSession, exchanges
from .server import ANONYMOUS, Connection, ServerContext, close_idle_connections, serve_tls
from .tls import certificate_principal
from .topics import Topics
from .txn.coordinator import TransactionCoordinator

log = logging.getLogger("pybroker")

# Announcing a failed log dir survives ZooKeeper reconnecting for this long.
LOG_DIR_EVENT_ATTEMPTS = 30
LOG_DIR_EVENT_RETRY_S = 1.0
# The controller's DescribeLogDirs to a broker that announced a failed dir.
LOG_DIRS_QUERY_TIMEOUT_S = 5.0

__all__ = ["Broker", "topic_name_problem"]


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
        listeners otherwise, so a start that fails leaves them untouched;
        in cluster mode always, once it has joined the cluster)."""
        self.config = config
        self.node_id = config.node_id
        self.stopping = False
        self.handlers: dict = {}  # bound once the services exist (load)
        self.zk = None  # cluster mode: the ZooKeeper client
        self.bound_by_listener: dict[str, tuple[str, int]] = {}  # the first socket of each listener
        self.locks = lock_dirs(config.log_dirs)
        try:
            cluster_id = check_meta_properties(config.log_dirs, self.node_id, config["cluster.id"] or None)
            if config.cluster_mode:
                self.stored_cluster_id = cluster_id
                self.metadata = self._zk_metadata()
            else:
                self.metadata = LocalMetadata(
                    find_metadata_file(config.log_dirs, _has_partition_dirs),
                    self.node_id,
                    self._broker_info(),
                    cluster_id,
                )
            self.acls, self.authorizer = self._acl_services()
        except BaseException:
            self._unlock()
            raise
        self.logs: LogManager | None = None
        self.replicas = ReplicaManager(
            self.node_id, config["producer.id.expiration.ms"], config["replica.lag.time.max.ms"]
        )
        self.replicas.metadata = self.metadata
        if config.cluster_mode:
            self._zk_services()
        else:
            self.topics = Topics(config, self.metadata, self.replicas)
            self.producer_ids = ProducerIds(self.metadata.allocate_producer_ids)
            self.controller = SingleNodeElections(self.metadata)
            self.users = LocalUsers(self.metadata)
            self.client_quotas = LocalClientQuotas(self.metadata)
        self.quotas = self._quota_manager()
        self.fetch_sessions = FetchSessionCache()
        self.bound: list[tuple[str, int]] = []
        self._stop = None
        if load and not config.cluster_mode:
            self.load()

    def _zk_metadata(self):
        from .cluster.zk_metadata import ZkMetadata
        from .zk import ZkClient

        config = self.config
        self.zk = ZkClient(
            config["zookeeper.connect"],
            session_timeout_ms=config["zookeeper.session.timeout.ms"],
            connection_timeout_ms=config["zookeeper.connection.timeout.ms"],
        )
        return ZkMetadata(self.zk, self.node_id, config.inter_broker_listener)

    def _acl_services(self):
        """The ACL store and the authorizer, when authorizer.class.name
        asks for one (else None, None: no check costs more than that)."""
        settings = authorizer_settings(self.config)
        if settings is None:
            return None, None
        if self.config.cluster_mode:
            from .cluster.zk_acls import ZkAcls

            store = ZkAcls(self.zk)
            if self.config.advertised_listener.protocol == "PLAINTEXT" and ANONYMOUS not in settings[0]:
                log.warning(
                    "authorizer on and the brokers talk %s as %s, not in super.users: they need CLUSTER_ACTION "
                    "and DESCRIBE on the cluster from ACLs, or replication and the controller's requests are refused",
                    self.config.advertised_listener.protocol, ANONYMOUS,
                )
        else:
            from .cluster.acls import LocalAcls

            store = LocalAcls.beside(self.metadata.path)
        return store, Authorizer(store.table, *settings)

    def _quota_manager(self) -> ClientQuotas:
        """The quotas the connections are held to, kept in step with the
        stored user and client-id configs."""
        quotas = ClientQuotas(self.config["quota.window.num"], self.config["quota.window.size.seconds"])
        m = self.metadata

        def update() -> None:
            quotas.update(m.users, m.clients, m.user_clients)

        m.on_entity_configs = update
        update()
        return quotas

    def _zk_services(self) -> None:
        from .cluster.client_quotas import ZkClientQuotas
        from .cluster.controller import Controller
        from .cluster.users import ZkUsers
        from .cluster.zk_admin import ZkTopicAdmin
        from .cluster.zk_isr import ZkIsrWriter
        from .cluster.zk_producer_ids import next_block
        from .cluster.zk_state import ZkHosting
        from .replica.fetcher import ReplicaFetchers

        self.isr_writer = self.replicas.isr_writer = ZkIsrWriter(self.zk, self.replicas)
        self.hosting = ZkHosting(self.config, self.replicas)
        self.hosting.metadata = self.metadata
        # Followers copy their leaders at the addresses the leaders registered.
        self.fetchers = ReplicaFetchers(self.replicas, self.config, self.metadata.broker)
        self.hosting.fetchers = self.fetchers
        self.topics = ZkTopicAdmin(self.config, self.metadata)
        self.users = ZkUsers(self.zk, self.metadata)
        self.client_quotas = ZkClientQuotas(self.zk, self.metadata)
        self.producer_ids = ProducerIds(allocate_async=lambda: next_block(self.zk, self.node_id))
        self.controller = Controller(
            self.zk, self.node_id, self.config, brokers=self.metadata.broker, log_dirs_of=self._log_dirs_of
        )
        self.registered_session: int | None = None
        self.broker_epoch = -1
        self._reregistering = False

    def load(self) -> None:
        """Open the logs: the first step that writes to the log dirs."""
        config = self.config
        topics = self.topics
        for info in self.metadata.all_topics():
            topics.drop_refused_overrides(info)
        write_meta_properties(config.log_dirs, self.node_id, self.metadata.cluster_id)
        self.metadata.save()
        known = {(t.name, p.index) for t in self.metadata.all_topics() for p in topics.hosted(t.partitions)}
        ids = {t.name: t.topic_id for t in self.metadata.all_topics()}
        # Metadata first: the logs are opened with their topics' configs. A
        # log of a partition this node is not a replica of is a stray, as
        # Kafka's (KIP-858) are: moved aside, its data kept; so is a log of
        # another topic that had the same name (its partition.metadata says).
        self.logs = LogManager(
            config.log_dirs, topics.log_config_for, known.__contains__, locks=self.locks, topic_id=ids.get
        )
        topics.logs = self.logs
        self._opened_logs()
        topics.open_all()
        self.groups = GroupCoordinator(**self.group_services())
        self.groups.load(now_ms())
        self.txns = TransactionCoordinator(**self.txn_services())
        self.txns.load(now_ms())
        self.handlers = handlers.bind(self.services())
        # What the connections get of the broker.
        self.server = ServerContext.from_config(config, self.handlers, quotas=self.quotas)

    def _opened_logs(self) -> None:
        """Wire the log manager just opened into the services that use it."""
        self.logs.on_dir_failure = self._log_dir_failed
        self.replicas.logs = self.logs
        self.log_tasks = LogTasks(self.config, self.logs, self.replicas)
        for stray in self.logs.strays:
            log.warning(
                "moved %s aside to %s: no topic has that partition on broker %d",
                stray.name.rsplit(".", 1)[0],
                stray,
                self.node_id,
            )
        for found in self.logs.foreign:
            topic, partition = found.partition
            log.warning(
                "moved %s-%d aside to %s: its partition.metadata names topic id %s, but topic %s has id %s "
                "(deleted and re-created under the same name): the partition starts again with an empty log",
                topic,
                partition,
                found.stray,
                uuid_text(found.stored_id),
                topic,
                uuid_text(found.topic_id),
            )

    def group_services(self) -> dict:
        """What the group coordinator is built from."""
        return {
            "config": self.config,
            "replicas": self.replicas,
            "metadata": self.metadata,
            "create_topic": self.topics.create_topic,
            "cluster": self.config.cluster_mode,
        }

    def txn_services(self) -> dict:
        """What the transaction coordinator is built from."""
        services = self.group_services()
        services.update(producer_ids=self.producer_ids, groups=self.groups, links=self._links())
        return services

    def _links(self):
        """Cluster mode: connections to the other brokers, for the markers
        of partitions they lead (txn/markers.py)."""
        if not self.config.cluster_mode:
            return None
        from .txn.links import BrokerLinks

        return BrokerLinks(self.metadata.broker, f"pybroker-{self.node_id}-txn-markers",
                           self.config.inter_broker_security)

    def services(self) -> dict:
        """What handlers may ask for, by the name of their keyword-only parameter."""
        return {
            "config": self.config,
            "metadata": self.metadata,
            "groups": self.groups,
            "txns": self.txns,
            "fetch_sessions": self.fetch_sessions,
            "topics": self.topics,
            "replicas": self.replicas,
            "producer_ids": self.producer_ids,
            "controller": self.controller,
            "authorizer": self.authorizer,
            "acls": self.acls,
            "users": self.users,
            "client_quotas": self.client_quotas,
        }

    def _certificate_principal(self, der: bytes | None) -> str:
        return certificate_principal(der, self.config.ssl_principal_rules)

    def _unlock(self) -> None:
        for lock in self.locks:
            lock.release()

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
                self.topics.nursery = root
                try:
                    metrics = await MetricsEndpoint.open(self.config["metrics.listener"])
                except MetricsListenerError as exc:
                    raise ListenerError(str(exc)) from None
                if metrics is not None:
                    root.start_soon(metrics.serve)  # 503 until attached below
                console = await self._open_console()
                if console is not None:
                    root.start_soon(console.serve)  # 503 until attached below
                listeners = []  # (config's listener, a bound socket of it)
                jwks = oauth_keys.key_sets(self.config.sasl)
                if jwks:  # OAUTHBEARER's signing keys, before any token comes
                    try:
                        await root.start(oauth_keys.keep_current, jwks)
                    except oauth_keys.JwksUnavailable as exc:
                        raise ListenerError(str(exc)) from None
                for lst in self.config.listeners:
                    try:
                        opened = await trio.open_tcp_listeners(lst.port, host=lst.bind_host)
                    except OSError as exc:
                        raise ListenerError(f"cannot listen on {lst.url()}: {exc.strerror or exc}") from exc
                    listeners += [(lst, socket) for socket in opened]
                    self.bound_by_listener[lst.name] = opened[0].socket.getsockname()[:2]
                self.bound = [ls.socket.getsockname()[:2] for _, ls in listeners]
                if self.config.cluster_mode:
                    try:
                        await self._join_cluster(root)
                    except BaseException:
                        for _, listener in listeners:  # free the ports now, for whoever starts next
                            await trio.aclose_forcefully(listener)
                        raise
                elif self.logs is None:
                    self.load()
                if not self.logs.online_dirs:
                    raise LogDirsFailed(self._all_dirs_failed())
                if not self.config.cluster_mode:
                    self._advertise()
                if metrics is not None:
                    metrics.attach(
                        node_id=self.node_id,
                        replicas=self.replicas,
                        server=self.server,
                        groups=self.groups,
                        metadata=self.metadata,
                        logs=self.logs,
                    )
                conns = trio.open_nursery()
                async with conns as conn_nursery:
                    accept_scope = trio.CancelScope()
                    root.start_soon(self._accept, listeners, conn_nursery, accept_scope)
                    root.start_soon(self.log_tasks.run_periodic)
                    if self.server.max_idle_ms > 0:
                        root.start_soon(close_idle_connections, self.server)
                    if self.config["log.cleaner.enable"]:
                        root.start_soon(self.log_tasks.run_cleaner)
                    root.start_soon(self.replicas.run)
                    root.start_soon(self.groups.run)
                    root.start_soon(self.txns.run)
                    if self.config.cluster_mode:
                        root.start_soon(self.fetchers.run)
                    name, host, port = self._advertised()
                    log.info(
                        "pybroker %s, node %d of cluster %s (%s), serving on %s, advertised as %s://%s:%d,"
                        " data in %s; %s",
                        __version__,
                        self.node_id,
                        self.metadata.cluster_id,
                        f"ZooKeeper {self.config['zookeeper.connect']}" if self.config.cluster_mode else "single node",
                        ", ".join(f"{h}:{p}" for h, p in self.bound),
                        name,
                        host,
                        port,
                        ", ".join(str(d) for d in self.config.log_dirs),
                        recovery_summary(self.logs),
                    )
                    if console is not None:
                        console.attach(self._own_bootstrap())
                    task_status.started(self.bound)
                    await self._stop.wait()
                    log.info("shutting down")
                    if self.config.cluster_mode and self.config["controlled.shutdown.enable"]:
                        await self._controlled_shutdown()
                    self.stopping = True
                    accept_scope.cancel()
                    self.server.stop_reading()
                    conn_nursery.cancel_scope.deadline = trio.current_time() + grace
                root.cancel_scope.cancel()
        finally:
            self.stopping = True
            self.topics.nursery = None
            if self.zk is not None:
                await self.zk.close()  # shielded; the registration goes at once
            if self.logs is None:
                self._unlock()
            else:
                background("producer snapshots", self.replicas.snapshot_producers)
                background("closing the logs", self.logs.close)  # also gives up the dirs' locks
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
        elif self.zk is not None and self.topics.nursery is not None:
            self.topics.nursery.start_soon(self._announce_log_dir_failure)

    async def _announce_log_dir_failure(self) -> None:
        """Kafka's propagateLogDirEvent: a notification the controller acts
        on, moving the leaderships of the replicas in the failed dir."""
        from pybroker.zk import ConnectionLossError

        from .cluster import znodes as zn

        for _ in range(LOG_DIR_EVENT_ATTEMPTS):
            try:
                await self.zk.create(zn.log_dir_event_path(), zn.encode_log_dir_event(self.node_id), sequence=True)
                return
            except ConnectionLossError:
                await trio.sleep(LOG_DIR_EVENT_RETRY_S)  # until reconnected
        log.error("could not tell the controller that a log dir failed: ZooKeeper kept failing")

    async def _log_dirs_of(self, node_id: int):
        """For the controller: (whether a log dir of broker ``node_id``
        failed, the partitions in its online dirs), asked with
        DescribeLogDirs; None if it does not answer."""
        from pybroker.protocol.errors import ProtocolError
        from pybroker.protocol.messages.describe_log_dirs_request import DescribeLogDirsRequest

        from .replica.link import LinkError

        if node_id == self.node_id:
            dirs = self.replicas.describe_log_dirs(self.config.log_dirs, None)
            online = {(p.topic, p.index) for d in dirs if d.error == ErrorCode.NONE for p in d.partitions}
            return any(d.error != ErrorCode.NONE for d in dirs), online
        info = self.metadata.broker(node_id)
        if info is None:
            return None
        try:
            # Bounded well below the session: the controller waits for it.
            with trio.fail_after(LOG_DIRS_QUERY_TIMEOUT_S):
                answer = await self._call_broker(info, DescribeLogDirsRequest(topics=None), 4, "controller")
        except (OSError, LinkError, ProtocolError, trio.TooSlowError) as exc:
            log.warning("DescribeLogDirs to broker %d failed: %r", node_id, exc)
            return None
        online = {
            (t.name, p.partition_index)
            for r in answer.results
            if r.error_code == ErrorCode.NONE
            for t in r.topics
            for p in t.partitions
        }
        return any(r.error_code != ErrorCode.NONE for r in answer.results), online

    def _all_dirs_failed(self) -> str:
        return "all log dirs in " + ", ".join(str(d) for d in self.logs.log_dirs) + " have failed"

    def _advertised(self) -> tuple[str, str, int]:
        """(listener name, host, port) clients and the other brokers are
        given: the inter-broker listener as advertised, its port the bound
        one when it asked for 0."""
        adv = self.config.advertised_listener
        return adv.name, adv.advertised_host, self._advertised_port(adv)

    def _advertised_port(self, adv) -> int:
        if adv.port == 0 and adv.name in self.bound_by_listener:
            return self.bound_by_listener[adv.name][1]
        return adv.port

    def _endpoints(self) -> tuple[tuple[str, str, str, int], ...]:
        """Every advertised listener: (name, security protocol, host, port)."""
        return tuple(
            (a.name, a.protocol, a.advertised_host, self._advertised_port(a)) for a in self.config.advertised
        )

    def _broker_info(self) -> BrokerInfo:
        _, host, port = self._advertised()
        endpoints = tuple((name, h, p) for name, _, h, p in self._endpoints())
        return BrokerInfo(self.node_id, host, port, endpoints=endpoints)

    async def _open_console(self):
        """The web console's sockets (console.listener), bound before
        anything else starts so that a bad value stops the broker at once."""
        if not self.config["console.listener"]:
            return None
        from .console import Console, ConsoleListenerError

        try:
            return await Console.open(self.config["console.listener"])
        except ConsoleListenerError as exc:
            raise ListenerError(str(exc)) from None

    def _own_bootstrap(self) -> str:
        """This broker's Kafka address as seen from this machine (the
        console is a client of the cluster through it)."""
        host, port = self.bound_by_listener[self.config.inter_broker_listener]
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1" if host != "::" else "::1"
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _advertise(self) -> None:
        self.metadata.this_broker = self._broker_info()

    # -- cluster mode -------------------------------------------------------------

    async def _join_cluster(self, root: trio.Nursery) -> None:
        """Join the cluster, then open the logs of the partitions assigned
        here and start the metadata task and the controller (see the
        module docstring)."""
        from .cluster import zk_registration as reg
        from .cluster.zk_metadata import Update
        from .zk import ZkConnectTimeout

        config, zk = self.config, self.zk
        try:
            await zk.connect()
        except ZkConnectTimeout as exc:
            raise ZkConnectTimeout(
                f"{exc} (no ZooKeeper session with {config['zookeeper.connect']} within "
                f"{zk.connection_timeout_ms} ms, zookeeper.connection.timeout.ms)"
            ) from None
        await reg.ensure_persistent_paths(zk)
        cluster_id = await reg.cluster_id(zk)
        reg.check_cluster_id(cluster_id, self.stored_cluster_id)
        self.metadata.cluster_id = cluster_id
        write_meta_properties(config.log_dirs, self.node_id, cluster_id, zookeeper=True)
        await self._register()
        self.metadata.on_new_session = self._register_again
        # The leader lease: leaders serve only while ZooKeeper keeps
        # answering that this broker is registered in its session.
        from .cluster.zk_lease import LeaseKeeper
        from .replica.lease import Lease

        self.replicas.lease = Lease()
        keeper = LeaseKeeper(zk, self.node_id, self.replicas.lease)
        keeper.on_lost_registration = lambda: self._registration_lost(root)
        await root.start(keeper.run)
        await self.metadata.refresh()  # the whole view, before any log is opened
        if self.acls is not None:
            await root.start(self.acls.run)  # every ACL read before a request is served
        hosting = self.hosting
        view = self.metadata.all_topics()
        known = hosting.assigned_here(view)
        by_name = {t.name: t for t in view}
        ids = {t.name: t.topic_id for t in view}
        self.logs = LogManager(
            config.log_dirs,
            lambda t: hosting.log_config(by_name[t]),
            known.__contains__,
            locks=self.locks,
            topic_id=ids.get,
        )
        self._opened_logs()
        hosting.logs, hosting.nursery = self.logs, root
        await hosting.prepare(Update({t.name: t for t in view}, full=True))
        self.metadata.host = hosting
        self.groups = GroupCoordinator(**self.group_services())
        hosting.groups = self.groups
        hosting.sync_groups()
        self.txns = TransactionCoordinator(**self.txn_services())
        hosting.txns = self.txns
        hosting.sync_txns()
        self.handlers = handlers.bind(self.services())
        self.server = ServerContext.from_config(config, self.handlers, quotas=self.quotas)
        await root.start(self.isr_writer.run)
        await root.start(self.metadata.run)
        await root.start(self.controller.run)
        root.start_soon(self.replicas.run_isr_expiration)

    async def _register(self) -> None:
        from .cluster import znodes
        from .cluster.zk_registration import register

        listener, host, port = self._advertised()
        registration = znodes.BrokerRegistration(
            self.node_id,
            host,
            port,
            rack=self.config["broker.rack"],
            listener=listener,
            timestamp_ms=now_ms(),
            endpoints=self._endpoints(),
        )
        self.broker_epoch = await register(self.zk, registration, self.registered_session)
        self.registered_session = self.zk.session_id

    async def _register_again(self) -> None:
        """A new ZooKeeper session replaced an expired one: register again
        (a new broker epoch); leaderships come back with the full re-read."""
        await self._register()
        self.hosting.session_registered()

    async def _controlled_shutdown(self) -> None:
        """Kafka's controlledShutdown: before it stops serving, the broker
        stops following and asks the controller to move its leaderships
        away and take it out of the ISRs, then waits for its metadata to
        show it leading nothing the controller could move. Clients meanwhile
        get NOT_LEADER_OR_FOLLOWER, retriable, and find the new leaders.
        ``controlled.shutdown.max.retries`` attempts, paused by
        ``controlled.shutdown.retry.backoff.ms``, each bounded by
        ``controller.socket.timeout.ms``; then it stops anyway."""
        from pybroker.protocol.errors import ProtocolError

        from .replica.link import LinkError

        config = self.config
        attempts = max(config["controlled.shutdown.max.retries"], 1)
        started = trio.current_time()
        self.hosting.stop_following()
        for attempt in range(attempts):
            try:
                with trio.fail_after(config["controller.socket.timeout.ms"] / 1000):
                    remaining = await self._ask_controller_to_move()
                    if not remaining:
                        await self.metadata.wait_until(self._leading_nothing, None)
                        log.info(
                            "Controlled shutdown request returned successfully after %d ms",
                            (trio.current_time() - started) * 1000,
                        )
                        return
                log.info(
                    "Remaining partitions to move: %s",
                    ",".join(f"{t}-{p}" for t, p in remaining),
                )
            except (KafkaError, OSError, LinkError, ProtocolError, trio.TooSlowError) as exc:
                log.warning("Error during controlled shutdown (attempt %d of %d): %r", attempt + 1, attempts, exc)
            if attempt + 1 < attempts:
                log.info("Retrying controlled shutdown after the previous attempt failed...")
                await trio.sleep(config["controlled.shutdown.retry.backoff.ms"] / 1000)
        log.warning("Proceeding to do an unclean shutdown as all the controlled shutdown attempts failed")

    async def _ask_controller_to_move(self) -> list[tuple[str, int]]:
        from pybroker.protocol.messages.controlled_shutdown_request import ControlledShutdownRequest

        controller_id = self.metadata.controller_id
        if controller_id == self.node_id:
            return await self.controller.controlled_shutdown(self.node_id, self.broker_epoch)
        info = self.metadata.broker(controller_id)
        if info is None:
            raise KafkaError(ErrorCode.NOT_CONTROLLER, f"no live controller is known (controller id {controller_id})")
        body = ControlledShutdownRequest(broker_id=self.node_id, broker_epoch=self.broker_epoch)
        answer = await self._call_broker(info, body, 3, "controlled-shutdown")
        if answer.error_code != ErrorCode.NONE:
            raise KafkaError(ErrorCode(answer.error_code), f"the controller (broker {controller_id}) refused")
        return [(p.topic_name, p.partition_index) for p in answer.remaining_partitions]

    async def _call_broker(self, info, body, version: int, purpose: str):
        """One request to another broker on a connection of its own."""
        from .replica.link import Link

        link = await Link.open(info.host, info.port, f"broker-{self.node_id}-{purpose}",
                               security=self.config.inter_broker_security)
        try:
            return await link.call(body, version)
        finally:
            await link.aclose()

    def _leading_nothing(self) -> bool:
        """No replicated partition is led here any more."""
        return not any(p.role is Role.LEADER and len(p.info.replicas) > 1 for p in self.replicas.partitions.values())

    def _registration_lost(self, root: trio.Nursery) -> None:
        """Another broker deleted this one's registration while its session
        lives (a controller that found its listener refusing connections
        took it for dead): drop every leadership, as on an expiry, and
        register again, a new broker epoch."""
        if self.stopping or self.zk.session_id != self.registered_session or self._reregistering:
            # Stopping: the controller took the closed listener for a dead
            # process, rightly. A new session: the metadata task registers it.
            return
        log.error(
            "the registration of broker %d was deleted while its ZooKeeper session lives "
            "(taken for dead): leading nothing, registering again",
            self.node_id,
        )
        self._reregistering = True
        self.hosting.session_expired()

        async def register_again():
            try:
                await self._register()
                self.hosting.session_registered()
                self.metadata.mark_all()
            except Exception:
                log.exception("registering broker %d again failed", self.node_id)
            finally:
                self._reregistering = False

        root.start_soon(register_again)

    async def _accept(self, listeners, nursery, scope: trio.CancelScope) -> None:
        with scope:
            async with trio.open_nursery() as inner:
                for lst, listener in listeners:
                    inner.start_soon(self._accept_one, lst, listener, nursery)
        for _, listener in listeners:
            await trio.aclose_forcefully(listener)

    async def _accept_one(self, lst, listener, nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                await trio.sleep(0.1)  # back off on e.g. EMFILE rather than spin
                continue
            if self.stopping:
                # Accepted in the same tick as the stop: the connections'
                # nursery may already be closed to new arrivals.
                await trio.aclose_forcefully(stream)
                return
            session = None
            if lst.name in self.config.sasl:
                session = SaslSession(lst.name, exchanges(self.config.sasl[lst.name], self.users.scram_credential),
                                      self.config.sasl_reauth_ms[lst.name])
            if lst.protocol in ("SSL", "SASL_SSL"):
                context = self.config.tls_contexts[lst.name]
                nursery.start_soon(serve_tls, self.server, stream, context, lst.name, session, self._certificate_principal)
            else:
                nursery.start_soon(Connection(self.server, stream, listener=lst.name, session=session).serve)
