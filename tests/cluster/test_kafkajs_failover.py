"""KafkaJS on its default retries survives its leader being killed, ten times.

KafkaJS 2.2.4 gives up on a send after 5 retries spread over about four
seconds, well inside the ZooKeeper session (6 s by default): a failover
that waited for the dead leader's session to expire would fail its sends.
Crash detection (the controller finds the dead listener refusing
connections) elects a new leader in well under a second. The "Getting
started" producer (compat/kafkajs/failover-producer.js) sends one
message at a time, acks=-1, while the test kills the partition's leader
with kill -9, waits for acknowledgements to resume, starts the broker
again and waits for it to be back in sync: ten rounds. No send may fail,
and every acknowledged message must be in the partition at the offset
KafkaJS was given."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from pybroker.local_cluster import LocalCluster, wait_for

from .test_replication_clients import create, latest, states, unique, wait_isr

SCRIPT = Path(__file__).parents[2] / "compat" / "kafkajs" / "failover-producer.js"
ROUNDS = 10


@pytest.fixture(scope="module")
def node():
    node = shutil.which("node")
    assert node, "node is needed (Debian: apt-get install nodejs; .ci/run installs it)"
    assert (SCRIPT.parent / "node_modules" / "kafkajs").is_dir(), f"run (cd {SCRIPT.parent} && npm ci)"
    return node


@pytest.fixture(scope="module")
def cluster():
    props = {
        "auto.create.topics.enable": "false",
        "offsets.topic.num.partitions": "1",
        # Rounds move the leadership on purpose; it stays where it went.
        "auto.leader.rebalance.enable": "false",
    }
    with LocalCluster(3, overrides=props) as c:
        yield c


class KafkaJSProducer:
    """The node process and the JSON lines it printed, read by a thread."""

    def __init__(self, node: str, bootstrap: str, topic: str):
        self.process = subprocess.Popen(
            [node, str(SCRIPT), bootstrap, topic],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[dict] = []
        self.acked_at: list[float] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(self.process.stdout, self._line), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr.append), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream, sink) -> None:
        for line in stream:
            sink(line)

    def _line(self, line: str) -> None:
        parsed = json.loads(line)
        if "acked" in parsed:
            self.acked_at.append(time.monotonic())
        self.lines.append(parsed)

    def longest_gap(self, since: float) -> float:
        """The longest wait between acknowledgements from the last one before ``since``."""
        times = self.acked_at[:]
        first = max((i for i, t in enumerate(times) if t < since), default=0)
        return max((b - a for a, b in zip(times[first:], times[first + 1 :])), default=0.0)

    def acked(self) -> list[dict]:
        return [line for line in self.lines if "acked" in line]

    def failures(self) -> list[dict]:
        return [line for line in self.lines if "error" in line or "fatal" in line]

    def stop(self, timeout: float = 60) -> int:
        self.process.stdin.close()
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            for t in self._threads:
                t.join(5)


def read_partition(bootstrap: str, topic: str, end: int) -> dict[int, str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"), "enable.auto.commit": False})
    found: dict[int, str] = {}
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 60
        while len(found) < end and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                assert msg.offset() not in found, f"offset {msg.offset()} read twice"
                found[msg.offset()] = msg.value().decode()
    finally:
        consumer.close()
    return found


def test_kafkajs_default_retries_survive_ten_leader_kills(node, cluster):
    topic = unique("kafkajs-failover")
    create(cluster.brokers[0].bootstrap, topic, 1)
    wait_isr(cluster, topic, 0, {1, 2, 3})
    producer = KafkaJSProducer(node, cluster.bootstrap_servers, topic)
    gaps = []
    try:
        wait_for(lambda: len(producer.acked()) >= 50 or producer.failures(), 60, "KafkaJS to be writing")
        for round_ in range(ROUNDS):
            leader, epoch, _ = states(cluster, topic)[0]
            victim = cluster.broker(leader)
            before = len(producer.acked())
            killed_at = time.monotonic()
            victim.kill()
            wait_for(
                lambda before=before: len(producer.acked()) >= before + 20 or producer.failures(),
                30,
                f"acknowledgements after killing leader {leader} (round {round_ + 1})",
            )
            gaps.append(producer.longest_gap(killed_at))
            assert not producer.failures(), producer.failures()
            assert states(cluster, topic)[0][1] > epoch
            victim.start()
            wait_isr(cluster, topic, 0, {1, 2, 3}, timeout=60)
        assert producer.stop() == 0, "".join(producer.stderr[-30:])
    finally:
        if producer.process.poll() is None:
            producer.stop()
    assert not producer.failures(), producer.failures()
    assert producer.lines[-1].get("done"), producer.lines[-3:]
    acked = producer.acked()
    _, end = latest(cluster.broker(states(cluster, topic)[0][0]).bootstrap, topic, 0)
    log = read_partition(cluster.bootstrap_servers, topic, end)
    assert len(log) == end, f"read {len(log)} of {end} records"
    misplaced = [a for a in acked if log.get(a["offset"]) != a["acked"]]
    assert not misplaced, f"{len(misplaced)} acknowledged messages not at their offset, e.g. {misplaced[:3]}"
    gaps.sort()
    print(
        f"{ROUNDS} leader kills, {len(acked)} messages acknowledged, none failed; "
        f"longest wait for an acknowledgement per kill: median {gaps[len(gaps) // 2]:.2f} s, max {gaps[-1]:.2f} s"
    )
