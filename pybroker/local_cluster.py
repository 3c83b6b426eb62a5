"""A cluster on one machine: one ZooKeeper and N pybroker processes on loopback.

    with LocalCluster(3) as cluster:
        producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers)

Layout under the data directory (a temporary one, removed on stop, unless
one is given)::

    zookeeper/          ZooKeeper's config, snapshots and log
    broker-1/           log.dirs of node 1 (and so on)
    logs/broker-1.log   what node 1 printed, appended across restarts

ZooKeeper comes up first; the brokers share its chroot (``/pybroker``) and
are numbered 1..N on consecutive ports. The cluster counts as formed when
every live broker's Metadata lists every live broker and a controller, which
is what a client bootstrapped from any one of them will rely on. Everything
binds 127.0.0.1, and every process is stopped by the PID recorded when it
was started, never by name: brokers first (SIGTERM, at once), ZooKeeper last.

Sync code, no trio: the tests, ``pybroker cluster``, the compatibility
matrix and the benchmark all drive it from plain threads. The brokers'
defaults are those of a development cluster: ``default.replication.factor``
and ``offsets.topic.replication.factor`` are min(3, N); ``min.insync.replicas``
stays at Kafka's 1.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Self, TypeVar

from pybroker.process import BrokerProcess, pybroker_command, request
from pybroker.protocol.errors import ProtocolError
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic

CHROOT = "/pybroker"
METADATA_VERSION = 12
FIRST_NODE_ID = 1
# Test and dev ports come from below Linux's ephemeral range (32768-60999),
# where no outgoing connection will be handed one of them meanwhile.
PORT_RANGE = (20000, 32000)

T = TypeVar("T")


def dev_defaults(n: int) -> dict[str, str]:
    """Properties every broker of an n-broker development cluster gets. A
    cluster stopped all at once leaves its last broker the only replica of
    everything, which no controlled-shutdown retry can move: Kafka's 5 s
    between its 3 attempts would only make every stop 10 s longer."""
    factor = str(min(3, n))
    return {
        "default.replication.factor": factor,
        "offsets.topic.replication.factor": factor,
        "controlled.shutdown.retry.backoff.ms": "200",
    }


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``condition`` until it returns something true; its last error is kept for the message."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except (OSError, ProtocolError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            hint = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}{hint}")
        time.sleep(interval)  # between polls, bounded by the deadline


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def consecutive_free_ports(n: int, attempts: int = 200) -> int:
    """The first of ``n`` consecutive loopback ports nobody listens on now."""
    low, high = PORT_RANGE
    for _ in range(attempts):
        base = random.randrange(low, high - n)
        if all(port_is_free(base + i) for i in range(n)):
            return base
    raise RuntimeError(f"found no {n} consecutive free ports in {low}-{high}")


def metadata(bootstrap: str, topics: list[str] | None = (), timeout: float = 5):
    """One broker's Metadata answer (v12): ``()`` asks for no topic, ``None`` for every one."""
    wanted = None if topics is None else [MetadataRequestTopic(name=t) for t in topics]
    body = MetadataRequest(topics=wanted, allow_auto_topic_creation=False)
    return request(bootstrap, body, METADATA_VERSION, timeout=timeout, client_id="pybroker-local-cluster")


@contextlib.contextmanager
def _terminal_interrupt_ignored():
    """Ctrl-C in a terminal goes to the whole foreground process group; a JVM
    started while SIGINT is ignored keeps ignoring it, so ZooKeeper outlives
    the brokers and is stopped last, by its PID. Only the main thread can
    change signal dispositions; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class ClusterBroker:
    """One broker of a LocalCluster: a node id, a port and a data dir it keeps across restarts."""

    def __init__(self, cluster: LocalCluster, node_id: int, port: int, props: Mapping[str, str]):
        self.cluster = cluster
        self.node_id = node_id
        self.process = BrokerProcess(
            pybroker_command(props, log_level=cluster.log_level),
            cluster.data_dir / f"broker-{node_id}",
            log_path=cluster.log_dir / f"broker-{node_id}.log",
            port=port,
            name=f"broker {node_id}",
            own_session=True,
        )
        self.killed = False

    port = property(lambda self: self.process.port)
    bootstrap = property(lambda self: self.process.bootstrap)
    pid = property(lambda self: self.process.pid)
    data_dir = property(lambda self: self.process.data_dir)
    log_path = property(lambda self: self.process.log_path)
    paused = property(lambda self: self.process.paused)

    def start(self, timeout: float = 60) -> float:
        """Start (again) on the same port and data; return once every broker lists it."""
        if self.alive():
            raise RuntimeError(f"broker {self.node_id} is running already (PID {self.pid})")
        deadline = time.monotonic() + timeout
        if self.killed:
            # Its last ZooKeeper session outlives it by up to a session timeout,
            # and with it the registration a new incarnation may not take over.
            self.cluster.wait_until_gone(self.node_id, timeout)
        while True:
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.process.spawn()
            try:
                self.process.wait_ready(deadline - time.monotonic())
                self.cluster.wait_until_formed(deadline - time.monotonic())
                break
            except (RuntimeError, TimeoutError):
                # With no other broker to tell, the old registration shows only
                # as this refusal (Kafka's): try again until it has expired.
                if self.process.alive() or time.monotonic() >= deadline or not self._refused_as_taken(log_start):
                    raise
                time.sleep(0.2)  # between attempts, bounded by the deadline
        self.killed = False
        return time.monotonic() - self.process.started_at

    def _refused_as_taken(self, log_start: int) -> bool:
        with open(self.log_path, "rb") as log:
            log.seek(log_start)
            return b"node already exists and owner" in log.read()

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (SIGCONT first if paused); SIGKILL after ``timeout``; the exit code."""
        return self.process.stop(timeout)

    def kill(self) -> None:
        """kill -9: a crash, its ZooKeeper session left to expire."""
        if self.process.alive():
            self.killed = True
        self.process.kill()

    def pause(self) -> None:
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    def alive(self) -> bool:
        return self.process.alive()

    def metadata(self, topics: list[str] | None = (), timeout: float = 5):
        return metadata(self.bootstrap, topics, timeout)

    def log_text(self) -> str:
        return self.process.log_text()

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.alive() else "stopped"
        return f"<broker {self.node_id} {self.bootstrap} {state}>"


class LocalCluster:
    def __init__(
        self,
        n: int = 3,
        data_dir: str | Path | None = None,
        base_port: int | None = None,
        zookeeper_jar: str | Path | None = None,
        overrides: Mapping[str, str] | None = None,
        broker_overrides: Mapping[int, Mapping[str, str]] | None = None,
        zookeeper_port: int = 0,
        chroot: str = CHROOT,
        log_level: str | None = None,
        log_dir: str | Path | None = None,
    ):
        """``overrides``: Kafka properties for every broker; ``broker_overrides``:
        {node id: properties} on top, for one broker (a rack, a bad setting);
        ``log_dir``: where the brokers' output goes (default: ``logs/`` in the data dir)."""
        if n < 1:
            raise ValueError("a cluster needs at least one broker")
        self.n = n
        self.chroot = chroot
        self.log_level = log_level
        self.zookeeper_jar = zookeeper_jar
        self.zookeeper_port = zookeeper_port
        self.overrides = dict(overrides or {})
        self.broker_overrides = {int(k): dict(v) for k, v in (broker_overrides or {}).items()}
        self._temporary = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="pybroker-cluster-") if data_dir is None else data_dir).resolve()
        self.log_dir = self.data_dir / "logs" if log_dir is None else Path(log_dir).resolve()
        self.base_port = base_port
        self.zookeeper = None
        self.brokers: list[ClusterBroker] = []

    # -- what clients and tests need ---------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    @property
    def zookeeper_connect(self) -> str:
        """What the brokers were given: ZooKeeper's address and the chroot."""
        return self.zookeeper.connect + self.chroot

    def broker(self, node_id: int) -> ClusterBroker:
        return next(b for b in self.brokers if b.node_id == node_id)

    def live_brokers(self) -> list[ClusterBroker]:
        return [b for b in self.brokers if b.alive() and not b.paused]

    def metadata(self, topics: list[str] | None = (), timeout: float = 5):
        """Metadata from the first live broker that answers."""
        error: BaseException | None = None
        for broker in self.live_brokers():
            try:
                return broker.metadata(topics, timeout)
            except (OSError, ProtocolError) as exc:
                error = exc
        raise ConnectionError(f"no live broker answered Metadata (last error: {error!r})")

    def controller_id(self, timeout: float = 5) -> int:
        """The controller a live broker names (-1 while there is none)."""
        return self.metadata(timeout=timeout).controller_id

    # -- life cycle ---------------------------------------------------------

    def start(self, timeout: float = 60) -> Self:
        """ZooKeeper, then every broker at once; return once the cluster is formed."""
        from pybroker.zk.server import ZooKeeperServer, find_zookeeper

        try:
            classpath = find_zookeeper(self.zookeeper_jar)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.zookeeper = ZooKeeperServer(self.data_dir / "zookeeper", port=self.zookeeper_port, classpath=classpath)
            with _terminal_interrupt_ignored():
                self.zookeeper.start()
            self.zookeeper.wait_ready(timeout)
            base = self.base_port or consecutive_free_ports(self.n)
            busy = [base + i for i in range(self.n) if not port_is_free(base + i)]
            if busy:
                raise OSError(f"port(s) {', '.join(map(str, busy))} on 127.0.0.1 already in use")
            self.brokers = [self._make_broker(FIRST_NODE_ID + i, base + i) for i in range(self.n)]
            for broker in self.brokers:
                broker.process.spawn()
            for broker in self.brokers:
                broker.process.wait_ready(timeout)
            self.wait_until_formed(timeout)
        except BaseException as exc:
            # A temporary data dir goes with the stop: keep what the processes said.
            for name, text in self._log_tails():
                exc.add_note(f"--- last lines of {name} ---\n{text}")
            self.stop()
            raise
        return self

    def _log_tails(self, lines: int = 15):
        logs = [(f"broker {b.node_id}", b.log_path) for b in self.brokers]
        logs += [("zookeeper", p) for p in (self.data_dir / "zookeeper").glob("*.log")]
        for name, path in logs:
            if path.exists():
                text = path.read_text(errors="replace").rstrip().splitlines()[-lines:]
                if text:
                    yield name, "\n".join(text)

    def _make_broker(self, node_id: int, port: int) -> ClusterBroker:
        props = {
            **dev_defaults(self.n),
            **self.overrides,
            "zookeeper.connect": self.zookeeper_connect,
            "broker.id": str(node_id),
            **self.broker_overrides.get(node_id, {}),
        }
        return ClusterBroker(self, node_id, port, props)

    def wait_until_formed(self, timeout: float = 60) -> None:
        """Until every live broker lists exactly the live brokers, and names a controller among them."""
        expected = {b.node_id for b in self.live_brokers()}

        def formed() -> bool:
            for broker in self.brokers:
                if broker.node_id in expected and not broker.alive():
                    code = broker.process.proc.returncode
                    raise RuntimeError(f"broker {broker.node_id} exited with {code}; see {broker.log_path}")
            for broker in self.live_brokers():
                answer = broker.metadata()
                if {b.node_id for b in answer.brokers} != expected or answer.controller_id not in expected:
                    return False
            return True

        wait_for(formed, timeout, f"every broker to list brokers {sorted(expected)} and a controller")

    def wait_until_gone(self, node_id: int, timeout: float = 60) -> None:
        """Until no other live broker lists ``node_id`` (its ZooKeeper session has expired)."""
        others = [b for b in self.live_brokers() if b.node_id != node_id]
        if others:
            wait_for(
                lambda: all(node_id not in {x.node_id for x in b.metadata().brokers} for b in others),
                timeout,
                f"broker {node_id}'s registration to expire",
            )

    def stop(self) -> None:
        """Brokers first (SIGTERM to all, then wait), ZooKeeper last; a temporary data dir goes too."""
        try:
            for broker in self.brokers:
                broker.process.terminate()
            for broker in self.brokers:
                broker.stop()
        finally:
            try:
                if self.zookeeper is not None:
                    self.zookeeper.stop()
            finally:
                if self._temporary:
                    shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LocalCluster {self.n} brokers {self.bootstrap_servers or '(not started)'}>"
