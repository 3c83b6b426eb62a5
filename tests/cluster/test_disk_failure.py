"""A full disk under one broker of a cluster, as a follower and as a leader.

Each broker's only log dir is its own small tmpfs (root only; unmounted
again at the end). Filling the victim's makes its next append fail with
ENOSPC: the dir goes offline and, being the broker's only one, the broker
stops on purpose (Kafka halts with "all log dirs ... have failed"),
handing its leaderships over first and closing its ZooKeeper session, so
the controller takes it out of every ISR. An idempotent acks=all producer
writing throughout must lose nothing, duplicate nothing and get no
error; once space is freed the broker starts again, recovers its torn
segment and rejoins the ISR."""

from __future__ import annotations

import os
import subprocess
import time
from contextlib import ExitStack, contextmanager

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from pybroker.local_cluster import LocalCluster, wait_for

from .test_replication_clients import IdempotentWriter, _read_all, states, unique, wait_isr

DISK_BYTES = 64 << 20
PAYLOAD = 1000
TOTAL = 6000


class SmallDisk:
    """A tmpfs of DISK_BYTES that ``fill`` fills with a file ``free`` removes."""

    def __init__(self, path):
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        chunk = bytes(1 << 20)
        with open(self.filler, "ab") as f:
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError as exc:
                if exc.errno != 28:  # ENOSPC: full, as wanted
                    raise

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


def _unmount(path) -> None:
    if subprocess.run(["umount", str(path)], check=False, capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


@contextmanager
def tmpfs(path):
    """A SmallDisk mounted at ``path`` (made here), unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root); tests/broker/test_disk_faults.py covers one broker")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(path)], check=True)
    try:
        yield SmallDisk(path)
    finally:
        _unmount(path)


@pytest.fixture(scope="module")
def disks(tmp_path_factory):
    base = tmp_path_factory.mktemp("disks")
    with ExitStack() as stack:
        yield {n: stack.enter_context(tmpfs(base / f"broker-{n}")) for n in (1, 2, 3)}


@pytest.fixture(scope="module")
def cluster(disks):
    props = {"auto.create.topics.enable": "false", "auto.leader.rebalance.enable": "false"}
    dirs = {n: {"log.dirs": str(d.path)} for n, d in disks.items()}
    with LocalCluster(3, overrides=props, broker_overrides=dirs) as c:
        yield c


@pytest.mark.parametrize("role", ["follower", "leader"])
def test_a_full_disk_stops_the_broker_and_loses_nothing(cluster, disks, role):
    controller_id = cluster.controller_id()
    victim = next(b for b in cluster.brokers if b.node_id != controller_id)
    others = [b.node_id for b in cluster.brokers if b is not victim]
    replicas = [victim.node_id, *others] if role == "leader" else [others[0], victim.node_id, others[1]]
    topic = unique(f"disk-{role}")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    new = NewTopic(topic, num_partitions=1, replica_assignment=[replicas], config={"min.insync.replicas": "2"})
    assert admin.create_topics([new])[topic].result(30) is None
    wait_isr(cluster, topic, 0, {1, 2, 3})
    assert states(cluster, topic)[0][0] == replicas[0]

    writer = IdempotentWriter(cluster.bootstrap_servers, topic, PAYLOAD, **{"message.timeout.ms": 120_000})
    writer.send(range(TOTAL // 2))
    writer.until_delivered(TOTAL // 8)
    filled = time.monotonic()
    disks[victim.node_id].fill()
    writer.send(range(TOTAL // 2, TOTAL))  # the next append there fails
    wait_for(lambda: not victim.alive(), 60, f"broker {victim.node_id} to stop on its full disk")
    stopped = time.monotonic()
    assert writer.producer.flush(120) == 0
    assert not writer.errors, writer.errors[:3]
    assert len(writer.delivered) == TOTAL

    log = victim.log_text()
    assert "failed" in log and "stopping the broker" in log, log[-3000:]
    leader, _, isr = states(cluster, topic)[0]
    assert leader != victim.node_id and victim.node_id not in isr
    values = _read_all(cluster.broker(leader).bootstrap, topic, 0, TOTAL)
    assert [v.split("|")[0] for v in values] == [f"m{i}" for i in range(TOTAL)], "lost, duplicated or reordered"

    # Space freed: it starts again, recovers what the full disk tore, and catches up.
    disks[victim.node_id].free()
    victim.start()
    wait_isr(cluster, topic, 0, {1, 2, 3}, timeout=60)
    print(
        f"{role}: stopped {stopped - filled:.1f} s after its disk filled, back in sync {time.monotonic() - stopped:.1f} s later"
    )
