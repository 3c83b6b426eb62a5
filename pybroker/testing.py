"""Run a real broker inside a Python test suite: no Docker, no JVM.

    from pybroker.testing import running_broker

    with running_broker() as broker:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)

The broker listens on a free loopback port, keeps its data in a temporary
directory (removed afterwards unless ``data_dir`` is given), and runs its
Trio loop in a background thread; leaving the block stops it gracefully.
Properties are Kafka's: ``running_broker({"num.partitions": "3"})``.

With pytest, the ``pybroker`` plugin (installed with the package) gives a
``kafka_broker`` fixture (one broker per test module) whose
``bootstrap_servers`` attribute is what clients need, and
``kafka_broker_factory`` fixtures to start brokers with properties of a
test's own (see ``pybroker.pytest_plugin``).

A cluster (ZooKeeper and N broker processes, see ``running_cluster``) needs
Java and ZooKeeper on the machine (Debian/Ubuntu: ``apt-get install
zookeeper``); the plugin's ``kafka_cluster`` fixture gives one per module.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from .config import DEV_DEFAULTS, BrokerConfig

if TYPE_CHECKING:
    from .local_cluster import LocalCluster


class RunningBroker:
    def __init__(self, broker, thread: threading.Thread, token: trio.lowlevel.TrioToken, data_dir: Path):
        self.broker = broker
        self.thread = thread
        self.token = token
        self.data_dir = data_dir
        self.error: BaseException | None = None
        host, port = broker.bound[0]
        self.host, self.port = host, port
        self.bootstrap_servers = f"{host}:{port}"

    def stop(self, timeout: float = 30) -> None:
        """Stop gracefully; raise if the broker had died of an error."""
        if self.thread.is_alive():
            try:
                trio.from_thread.run_sync(self.broker.stop, trio_token=self.token)
            except trio.RunFinishedError:
                pass
            self.thread.join(timeout)
            if self.thread.is_alive():
                raise RuntimeError("broker did not stop in time")
        if self.error is not None:
            raise RuntimeError("the broker failed while running") from self.error


@contextlib.contextmanager
def running_broker(
    props: Mapping[str, str] | None = None, data_dir: str | Path | None = None, dev: bool = False
) -> Iterator[RunningBroker]:
    """``dev``: ``config.DEV_DEFAULTS`` beneath ``props`` (the plugin's
    fixtures: a new group's first message at once)."""
    from .broker import Broker

    tmp = None
    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="pybroker-")
        data_dir = tmp
    settings = dict(DEV_DEFAULTS) if dev else {}
    settings.update({"listeners": "PLAINTEXT://127.0.0.1:0", "log.dirs": str(data_dir), "shutdown.grace.ms": "2000"})
    settings.update(props or {})
    config = BrokerConfig(settings)
    ready = threading.Event()
    box: dict = {}

    async def main():
        broker = Broker(config, load=False)
        box["broker"] = broker
        box["token"] = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            await nursery.start(broker.run)
            ready.set()

    def target():
        try:
            trio.run(main)
        except BaseException as exc:  # reported to the caller, at start or at stop
            box["error"] = exc
            if "running" in box:
                box["running"].error = exc
        finally:
            ready.set()

    thread = threading.Thread(target=target, name="pybroker", daemon=True)
    thread.start()
    ready.wait()
    if "error" in box:
        raise RuntimeError("broker failed to start") from box["error"]
    running = box["running"] = RunningBroker(box["broker"], thread, box["token"], Path(data_dir))
    try:
        yield running
    finally:
        running.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def running_cluster(
    n: int = 3, props: Mapping[str, str] | None = None, data_dir: str | Path | None = None, **kwargs
) -> Iterator[LocalCluster]:
    """A local cluster: one ZooKeeper and ``n`` brokers, each a child process.

        with running_cluster(3) as cluster:
            producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers)
            cluster.brokers[0].kill()  # or .stop(), .pause(), .resume(), .start()

    Brokers listen on consecutive free loopback ports, share ZooKeeper's
    ``/pybroker`` chroot and keep their data in a temporary directory
    (removed afterwards unless ``data_dir`` is given). ``props`` are Kafka
    properties for every broker, on top of a development cluster's defaults
    (replication factor min(3, n) for new topics and for the offsets topic);
    the other keyword arguments are ``LocalCluster``'s. The block starts once
    every broker lists all the others and a controller; leaving it stops the
    brokers, then ZooKeeper, by PID.
    """
    from .local_cluster import LocalCluster

    with LocalCluster(n, data_dir=data_dir, overrides=props, **kwargs) as cluster:
        yield cluster
