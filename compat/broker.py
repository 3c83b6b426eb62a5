"""What the matrix runs against: a fresh pybroker, or a fresh local cluster.

Both kinds of target start from nothing, hand each client the address to
bootstrap from, notice a broker that died under a client (and bring it
back), and stop by PID. Given a ``Secured`` (security.py), every broker also
gets an SSL, a SASL_SSL and a SASL_PLAINTEXT listener (those the modes that
run need) beside its PLAINTEXT one, which the brokers use between them. The runner does not lean on any client under test
to set things up: topics are created with a CreateTopics request encoded by
``protocol/``, and on a cluster the runner waits until every broker's
Metadata shows the new topic with a leader for each partition, so that a
client bootstrapped from any broker finds it.
"""

from __future__ import annotations

from pathlib import Path

from pybroker.local_cluster import LocalCluster, consecutive_free_ports, metadata, wait_for
from pybroker.process import BrokerProcess, free_port, pybroker_process, request
from pybroker.protocol.messages.create_topics_request import CreatableTopic, CreatableTopicConfig, CreateTopicsRequest

from .security import Secured, listeners

BROKER_PROPS = {
    "auto.create.topics.enable": "false",  # so that the error scenario has a topic that cannot appear
    "group.initial.rebalance.delay.ms": "0",  # as in Kafka's own dev/test setups; saves 3 s per join
}
CLUSTER_BROKERS = 3
# The broker's default replication factor: 1 on a single node, min(3, N) on a cluster.
DEFAULT_FACTOR = -1


class SingleNode:
    """One pybroker in a child process."""

    setup = "single"

    def __init__(self, data_dir: Path, log_dir: Path, secured: Secured | None = None):
        log_path = log_dir / "broker.log"
        log_path.unlink(missing_ok=True)  # this run's log only; restarts within the run append to it
        self.secured = secured
        port = free_port()
        props = dict(BROKER_PROPS)
        # {security protocol: port} of the secured listeners
        self.ports = {p: free_port() for p in secured.protocols} if secured else {}
        if secured:
            props.update(secured.broker_props(), listeners=listeners(port, self.ports))
        self.broker: BrokerProcess = pybroker_process(data_dir / "single", props, log_path=log_path, port=port)
        self.brokers = 1

    def start(self) -> str:
        self.broker.start()
        if self.secured:
            provision_or_stop(self, [self.broker.bootstrap])
        more = "".join(f", {p} on 127.0.0.1:{n}" for p, n in self.ports.items())
        return f"broker on {self.broker.bootstrap}{more}, log in {self.broker.log_path}"

    def bootstrap(self, index: int, protocol: str = "PLAINTEXT") -> str:
        return self.broker.bootstrap if protocol == "PLAINTEXT" else f"127.0.0.1:{self.ports[protocol]}"

    def create_topic(self, name: str, partitions: int = 1, configs: dict | None = None) -> None:
        create_topic(self.broker.bootstrap, name, partitions, configs)

    def recover(self) -> str | None:
        """Why the last cell cannot be trusted (a broker died), after bringing it back; None if all is well."""
        if self.broker.alive():
            return None
        self.broker.start()
        return f"the broker died; see {self.broker.log_path}"

    def stop(self) -> None:
        self.broker.stop()


class Cluster:
    """A LocalCluster: ZooKeeper and three brokers, each client bootstrapped from one of them."""

    setup = "cluster"

    def __init__(self, data_dir: Path, log_dir: Path, brokers: int = CLUSTER_BROKERS, secured: Secured | None = None):
        log_dir = log_dir / "cluster"
        for old in log_dir.glob("broker-*.log"):
            old.unlink()  # this run's logs only
        self.secured = secured
        props, per_broker, base = dict(BROKER_PROPS), {}, None
        # [{security protocol: port}] of each broker's secured listeners
        self.ports = [{p: free_port() for p in secured.protocols} if secured else {} for _ in range(brokers)]
        if secured:
            props.update(secured.broker_props())
            base = consecutive_free_ports(brokers)
            per_broker = {i + 1: {"listeners": listeners(base + i, self.ports[i])} for i in range(brokers)}
        self.cluster = LocalCluster(brokers, data_dir=data_dir / "cluster", overrides=props, log_dir=log_dir,
                                    base_port=base, broker_overrides=per_broker)
        self.brokers = brokers

    def start(self) -> str:
        self.cluster.start()
        if self.secured:
            provision_or_stop(self, [b.bootstrap for b in self.cluster.brokers])
        zk = self.cluster.zookeeper_connect
        more = "".join(f", {p} on {','.join(str(ports[p]) for ports in self.ports)}" for p in self.ports[0])
        return f"cluster on {self.cluster.bootstrap_servers}{more} (ZooKeeper {zk}), logs in {self.cluster.log_dir}"

    def bootstrap(self, index: int, protocol: str = "PLAINTEXT") -> str:
        """One broker's address only, a different one for each client: the client must find the rest itself."""
        n = index % len(self.cluster.brokers)
        return self.cluster.brokers[n].bootstrap if protocol == "PLAINTEXT" else f"127.0.0.1:{self.ports[n][protocol]}"

    def create_topic(self, name: str, partitions: int = 1, configs: dict | None = None) -> None:
        create_topic(self.cluster.brokers[0].bootstrap, name, partitions, configs)
        wait_for(
            lambda: all(_has_leaders(metadata(b.bootstrap, [name]), partitions) for b in self.cluster.brokers),
            30,
            f"every broker to show {name} with a leader per partition",
        )

    def recover(self) -> str | None:
        dead = [b for b in self.cluster.brokers if not b.alive()]
        for broker in dead:
            broker.start()
        if dead:
            return "broker(s) died: " + ", ".join(f"{b.node_id} (see {b.log_path})" for b in dead)
        return None

    def stop(self) -> None:
        self.cluster.stop()


def provision_or_stop(target, bootstraps: list[str]) -> None:
    """The security modes' users; a target that cannot have them is stopped before the error goes up."""
    try:
        target.secured.provision(bootstraps)
    except BaseException:
        target.stop()
        raise


def _has_leaders(answer, partitions: int) -> bool:
    topic = answer.topics[0]
    return (
        topic.error_code == 0
        and len(topic.partitions) == partitions
        and all(p.leader_id >= 0 for p in topic.partitions)
    )


def create_topic(bootstrap: str, name: str, partitions: int = 1, configs: dict | None = None) -> None:
    """Create a topic with CreateTopics v5; raise on any error code."""
    topic = CreatableTopic(
        name=name,
        num_partitions=partitions,
        replication_factor=DEFAULT_FACTOR,
        configs=[CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()],
    )
    body = CreateTopicsRequest(topics=[topic], timeout_ms=10000)
    response = request(bootstrap, body, 5, client_id="compat-runner")
    for result in response.topics:
        if result.error_code:
            raise RuntimeError(f"CreateTopics {name}: error {result.error_code} {result.error_message}")
