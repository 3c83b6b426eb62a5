"""A broker that must not join the cluster says why in one line and exits
non-zero, as ``python -m pybroker`` run by an operator: its id is taken by
a live broker, its log dirs belong to another cluster, or ZooKeeper cannot
be reached within zookeeper.connection.timeout.ms."""

import subprocess
import sys
import time

from pybroker.process import free_port

from .broker_support import cluster_broker


def run_pybroker(data_dir, props: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "pybroker"]
    settings = {"listeners": f"PLAINTEXT://127.0.0.1:{free_port()}", "log.dirs": str(data_dir), **props}
    for key, value in settings.items():
        args += ["--override", f"{key}={value}"]
    # Expected to exit by itself; run() kills it (by its PID) if it does not.
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_an_id_held_by_a_live_broker_is_refused(zk_connect, zk_admin, tmp_path):
    with cluster_broker(zk_connect, 1, tmp_path) as live:
        owner = live.broker.zk.session_id
        result = run_pybroker(tmp_path / "second", {"zookeeper.connect": zk_connect, "broker.id": "1"})
        assert result.returncode != 0
        line = last_line(result)
        assert line.startswith(
            f"pybroker: Error while creating ephemeral at /brokers/ids/1, node already exists and owner '0x{owner:x}' "
            "does not match current session '0x"
        ), result.stderr
        assert "Traceback" not in result.stderr
        # The live broker's registration is untouched.
        assert zk_admin.get("/brokers/ids/1")[1].ephemeralOwner == owner


def test_log_dirs_of_another_cluster_are_refused(zk_connect, zk_admin, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    meta = "version=0\ncluster.id=SomeOtherClusterId00w\nbroker.id=1\n"
    (data / "meta.properties").write_text(meta)
    result = run_pybroker(data, {"zookeeper.connect": zk_connect, "broker.id": "1"})
    assert result.returncode != 0
    cluster_id = zk_admin.get("/cluster/id")[0].decode().split('"id":"')[1].rstrip('"}')
    assert last_line(result) == (
        f"pybroker: The Cluster ID {cluster_id} doesn't match stored clusterId Some(SomeOtherClusterId00w) in "
        "meta.properties. The broker is trying to join the wrong cluster. Configured zookeeper.connect may be wrong."
    )
    assert (data / "meta.properties").read_text() == meta
    assert zk_admin.exists("/brokers/ids/1") is None


def test_an_unreachable_zookeeper_is_a_clear_error_after_the_connection_timeout(tmp_path):
    nothing = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = run_pybroker(tmp_path / "data", {"zookeeper.connect": nothing, "zookeeper.connection.timeout.ms": "1500"})
    took = time.monotonic() - started
    assert result.returncode != 0
    assert last_line(result) == (
        "pybroker: Timed out waiting for connection while in state: CONNECTING "
        f"(no ZooKeeper session with {nothing} within 1500 ms, zookeeper.connection.timeout.ms)"
    )
    assert 1.5 <= took < 30
