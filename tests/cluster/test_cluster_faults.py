"""Faults of a local cluster: a controller killed or paused, ZooKeeper
missing at start, and ``pybroker cluster`` stopped with Ctrl-C.

Each test runs its own LocalCluster (ZooKeeper and broker processes,
stopped by PID) with a short ZooKeeper session, and looks at ZooKeeper with
a plain kazoo client in the cluster's chroot. Times are measured from the
fault and printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from pybroker.local_cluster import LocalCluster, consecutive_free_ports, wait_for
from pybroker.process import free_port

from .processes import listening, pid_alive

SESSION_MS = 4000
PROPS = {"zookeeper.session.timeout.ms": str(SESSION_MS), "group.initial.rebalance.delay.ms": "0"}
GRANTED = re.compile(r"session timeout (\d+) ms granted")


@pytest.fixture
def cluster():
    with LocalCluster(3, overrides=PROPS) as c:
        yield c


@pytest.fixture
def zk(cluster):
    client = KazooClient(hosts=cluster.zookeeper_connect)
    client.start(10)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def controller(zk: KazooClient) -> tuple[int | None, int]:
    """(broker id in /controller or None, the epoch in /controller_epoch).

    /controller first: an election writes both in one multi, so the epoch
    read after it is at least the one that controller was elected with."""
    try:
        broker = json.loads(zk.get("/controller")[0])["brokerid"]
    except NoNodeError:
        broker = None
    return broker, int(zk.get("/controller_epoch")[0])


def granted_session_ms(cluster: LocalCluster, node_id: int) -> int:
    """The session timeout ZooKeeper granted, as the broker logged it."""
    found = GRANTED.findall(cluster.broker(node_id).log_text())
    assert found, f"broker {node_id} did not log the session timeout ZooKeeper granted"
    return int(found[-1])


def test_killed_controller_is_replaced_within_the_session_timeout(cluster, zk):
    old, epoch = wait_for(lambda: (c := controller(zk))[0] is not None and c, 30, "a controller")
    assert cluster.controller_id() == old
    session_ms = granted_session_ms(cluster, old)

    killed_at = time.monotonic()
    cluster.broker(old).kill()
    new, new_epoch = wait_for(
        lambda: (c := controller(zk))[0] not in (None, old) and c, session_ms / 1000 + 10, "another controller"
    )
    took = time.monotonic() - killed_at
    print(f"\ncontroller {old} killed; broker {new} controller with epoch {new_epoch} after {took:.2f} s")
    assert new_epoch == epoch + 1
    assert took <= session_ms / 1000 + 1, f"took {took:.2f} s; session timeout {session_ms} ms"

    # The survivors say so to clients, and the killed broker comes back as a follower of the new controller.
    wait_for(lambda: all(b.metadata().controller_id == new for b in cluster.live_brokers()), 10, "Metadata to name it")
    cluster.broker(old).start()
    assert controller(zk) == (new, new_epoch)
    assert {b.node_id for b in cluster.brokers[0].metadata().brokers} == {1, 2, 3}


def snapshot(zk: KazooClient, path: str = "/") -> dict[str, tuple[bytes, int, int]]:
    """Every znode under the chroot: path -> (data, version, ephemeral owner)."""
    out = {}
    for child in zk.get_children(path):
        full = f"{path.rstrip('/')}/{child}"
        try:
            data, stat = zk.get(full)
            out[full] = (data, stat.version, stat.ephemeralOwner)
            out.update(snapshot(zk, full))
        except NoNodeError:
            pass  # gone while walking: a later snapshot shows it
    return out


def unexplained_changes(before: dict, after: dict, new_epoch: int) -> list[str]:
    """Differences that neither the new controller nor a broker (re-)registering explains."""
    problems = []
    for path in sorted(before.keys() | after.keys()):
        if before.get(path) == after.get(path) or path.startswith("/brokers/ids/"):
            continue
        written_by_new = path.endswith("/state") and path in after
        if written_by_new and json.loads(after[path][0])["controller_epoch"] == new_epoch:
            continue  # a partition state the new controller wrote
        problems.append(f"{path}: {before.get(path)} -> {after.get(path)}")
    return problems


def test_paused_controller_changes_nothing_once_resumed(cluster, zk):
    old, epoch = wait_for(lambda: (c := controller(zk))[0] is not None and c, 30, "a controller")
    session_ms = granted_session_ms(cluster, old)
    old_broker = cluster.broker(old)
    old_broker.pause()
    try:
        paused_at = time.monotonic()
        new, new_epoch = wait_for(
            lambda: (c := controller(zk))[0] not in (None, old) and c, session_ms / 1000 + 10, "another controller"
        )
        print(f"\ncontroller {old} paused; broker {new} took over after {time.monotonic() - paused_at:.2f} s")
        assert new_epoch == epoch + 1

        # The new controller at work: a topic created through another broker gets its partition states.
        from confluent_kafka.admin import AdminClient, NewTopic

        topic = "created-while-paused"
        admin = AdminClient({"bootstrap.servers": cluster.broker(new).bootstrap})
        assert admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=2)])[topic].result(30) is None
        states = [f"/brokers/topics/{topic}/partitions/{p}/state" for p in range(3)]
        wait_for(lambda: all(zk.exists(s) for s in states), 30, "the new topic's partition states")
        assert all(json.loads(zk.get(s)[0])["controller_epoch"] == new_epoch for s in states)
        wait_for(lambda: not zk.exists(f"/brokers/ids/{old}"), session_ms / 1000 + 10, "the paused broker to expire")
        before = snapshot(zk)
    finally:
        old_broker.resume()

    # For two session timeouts the old controller is awake: whatever it
    # tries must fail its epoch check. It does come back as a broker.
    deadline = time.monotonic() + 2 * session_ms / 1000
    while time.monotonic() < deadline:
        problems = unexplained_changes(before, snapshot(zk), new_epoch)
        assert not problems, "changed after the old controller resumed:\n" + "\n".join(problems)
        time.sleep(0.1)  # between snapshots, bounded by the deadline
    assert controller(zk) == (new, new_epoch)
    assert before["/controller"] == snapshot(zk)["/controller"]
    wait_for(lambda: zk.exists(f"/brokers/ids/{old}"), 10, "the resumed broker to register again")
    wait_for(lambda: all(b.metadata().controller_id == new for b in cluster.brokers), 10, "every broker to name it")


def test_zookeeper_unreachable_at_start_stops_the_broker(tmp_path):
    timeout_ms = 2000
    port = free_port()  # nothing listens there
    args = [
        sys.executable,
        "-m",
        "pybroker",
        "--override",
        f"zookeeper.connect=127.0.0.1:{port}/pybroker",
        "--override",
        f"zookeeper.connection.timeout.ms={timeout_ms}",
        "--override",
        "broker.id=1",
        "--override",
        f"listeners=PLAINTEXT://127.0.0.1:{free_port()}",
        "--override",
        f"log.dirs={tmp_path / 'data'}",
    ]
    started = time.monotonic()
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    took = time.monotonic() - started
    print(f"\nthe broker gave up after {took:.2f} s: {out.stderr.strip().splitlines()[-1:]}")
    assert out.returncode != 0
    assert took >= timeout_ms / 1000
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("pybroker: ") and "Timed out waiting for connection" in last, out.stderr[-2000:]


def read_until(proc: subprocess.Popen, marker: str, timeout: float, seen: list[str]) -> None:
    """Append the process's stdout lines to ``seen`` until one starts with ``marker``."""
    lines: queue.Queue[str] = queue.Queue()

    def reader():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=reader, daemon=True).start()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            seen.append(lines.get(timeout=left))
        except queue.Empty:
            break
        if seen[-1].startswith(marker):
            return
    raise AssertionError(f"no {marker!r} line within {timeout} s; printed:\n" + "\n".join(seen))


def printed_pids(lines: list[str]) -> list[int]:
    return [int(p) for line in lines for p in re.findall(r"\(pid (\d+)\)", line)]


def test_cluster_command_serves_and_stops_everything_on_ctrl_c():
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    base = consecutive_free_ports(3)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pybroker", "cluster", "--brokers", "3", "--port", str(base)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        started = time.monotonic()
        read_until(proc, "bootstrap servers:", 90, lines)
        print(f"\n`pybroker cluster` ready after {time.monotonic() - started:.1f} s")
        pids = printed_pids(lines)
        assert len(pids) == 4, lines  # ZooKeeper and three brokers
        data_dir = Path(next(line for line in lines if line.startswith("data and logs in")).split()[4])
        bootstrap = lines[-1].split(": ", 1)[1]
        ports = [base, base + 1, base + 2]
        assert bootstrap == ",".join(f"127.0.0.1:{p}" for p in ports)

        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        sent = producer.send("from-the-cli", b"hello cluster").get(timeout=60)
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        consumer.assign([TopicPartition("from-the-cli", sent.partition)])
        consumer.seek_to_beginning()
        got = wait_for(lambda: [r.value for rs in consumer.poll(timeout_ms=500).values() for r in rs], 30, "it")
        consumer.close()
        assert got == [b"hello cluster"]

        proc.send_signal(signal.SIGINT)
        stopped_at = time.monotonic()
        assert proc.wait(60) == 0, proc.stderr.read()
        print(f"stopped {time.monotonic() - stopped_at:.1f} s after Ctrl-C")
        assert [p for p in pids if pid_alive(p)] == []
        assert [p for p in ports if listening(p)] == []
        assert not data_dir.exists()
    finally:
        if proc.poll() is None:
            proc.terminate()  # it stops its cluster on SIGTERM as on Ctrl-C
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        for pid in printed_pids(lines):  # the processes it printed, ours to clean up if it failed to
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_cluster_command_without_zookeeper_says_what_to_install(tmp_path):
    missing = tmp_path / "no-zookeeper.jar"
    out = subprocess.run(
        [sys.executable, "-m", "pybroker", "cluster", "--zookeeper-jar", str(missing), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pybroker: "), out.stderr
    assert "apt-get install zookeeper" in lines[0]
