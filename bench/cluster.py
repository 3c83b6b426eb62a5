"""``pybroker-cluster``: three pybroker brokers and ZooKeeper, started by
pybroker.local_cluster and measured as one broker: the load generator is
bootstrapped with all three, and CPU time and memory are the three broker
processes' summed (ZooKeeper's are left out: it is not the broker under test).

Not in the default broker list: it answers how a cluster compares with a
single node, not how pybroker compares with its peers.
"""

from __future__ import annotations

import time
from pathlib import Path

from pybroker.local_cluster import LocalCluster

from .brokers import REPO, BrokerKind, cpu_seconds, pybroker_version, reset_peak_rss, status_kib

NAME = "pybroker-cluster"
SIZE = 3


def cluster_kind() -> BrokerKind:
    return BrokerKind(
        NAME,
        f"{pybroker_version(REPO)}, {SIZE} brokers + ZooKeeper",
        persistent=True,
        command=None,
        brokers=SIZE,
        # The cluster's default: replication factor 3, min.insync.replicas 1.
        replication_factor=-1,
        # The raw clients (fetch, connections) go to each partition's leader.
        not_applicable={
            "startup": "it restarts one broker process; a cluster's restart is another scenario",
        },
        note=(
            f"{SIZE} brokers + ZooKeeper; broker CPU s and RSS are the {SIZE} broker processes' summed "
            "(ZooKeeper not counted there, though start s includes its start; a peak RSS is the sum of each broker's own peak). Topics at the cluster's "
            "default replication factor 3, followers copying their leaders, min.insync.replicas 1 unless the "
            "workload's name says isr2; a message is readable once every in-sync replica holds it (fsynced, "
            "unless the name says cached: write.caching=true)."
        ),
    )


class ClusterBrokers:
    """What the harness and the workloads use of a BrokerProcess, for a LocalCluster."""

    def __init__(self, kind: BrokerKind, data_dir: Path):
        self.kind = kind
        self.data_dir = Path(data_dir)
        self.started_at = 0.0
        self.cluster = LocalCluster(
            kind.brokers, data_dir=self.data_dir, overrides={"num.partitions": "6"}, log_level="WARNING"
        )

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap_servers

    @property
    def pids(self) -> list[int]:
        return [b.pid for b in self.cluster.brokers]

    def start(self, timeout: float = 120) -> float:
        """ZooKeeper and the brokers; the seconds until the cluster is formed."""
        self.started_at = time.monotonic()
        self.cluster.start(timeout)
        return time.monotonic() - self.started_at

    def stop(self) -> None:
        self.cluster.stop()

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def rss_bytes(self) -> int:
        return sum(status_kib(pid, "VmRSS") for pid in self.pids) * 1024

    def peak_rss_bytes(self) -> int:
        return sum(status_kib(pid, "VmHWM") for pid in self.pids) * 1024

    def reset_peak_rss(self) -> None:
        for pid in self.pids:
            reset_peak_rss(pid)
