"""pybroker.zk.server: ZooKeeper as a child process, stopped by its PID."""

import ipaddress
import os
from pathlib import Path

import pytest

from pybroker.zk.server import ZooKeeperNotFound, ZooKeeperServer, find_zookeeper, four_letter_word

from ..zk_fixtures import kazoo_client


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def listening_addresses(port: int) -> set[str]:
    """The addresses with a socket listening on ``port``, from the kernel's tables."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, local_port = local.split(":")
            if state == "0A" and int(local_port, 16) == port:
                # Each 32-bit word in host (little-endian) order.
                raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
                ip = ipaddress.ip_address(raw)
                found.add(str(getattr(ip, "ipv4_mapped", None) or ip))
    return found


def test_started_on_loopback_and_stopped_by_pid(tmp_path):
    server = ZooKeeperServer(tmp_path / "zk")
    try:
        server.start()
        server.wait_ready(60)
        pid = server.pid
        assert not gone(pid)
        assert "Mode: standalone" in four_letter_word(server.port, "srvr")
        assert listening_addresses(server.port) == {"127.0.0.1"}
        conf = four_letter_word(server.port, "conf")
        assert "maxSessionTimeout=60000" in conf and "minSessionTimeout=1000" in conf
        assert (tmp_path / "zk" / "zookeeper.log").stat().st_size > 0
    finally:
        server.stop()
    assert gone(pid)
    assert four_letter_word(server.port, "srvr") == ""


def test_killed_and_restarted_on_the_same_port_with_its_data(tmp_path):
    with ZooKeeperServer(tmp_path / "zk") as server:
        port, first = server.port, server.pid
        admin = kazoo_client(server.connect)
        try:
            admin.create("/kept", b"yes")
        finally:
            admin.stop()
            admin.close()
        server.restart(kill=True)
        assert gone(first) and server.pid != first and server.port == port
        admin = kazoo_client(server.connect)
        try:
            assert admin.get("/kept")[0] == b"yes"
        finally:
            admin.stop()
            admin.close()
        second = server.pid
    assert gone(second)


def test_a_paused_server_still_stops(tmp_path):
    with ZooKeeperServer(tmp_path / "zk") as server:
        server.pause()
        assert four_letter_word(server.port, "srvr", timeout=0.5) == ""
        pid = server.pid
    assert gone(pid) and server.proc.returncode is not None


def test_zookeeper_not_found_names_the_package_and_the_way_round(tmp_path, monkeypatch):
    monkeypatch.delenv("PYBROKER_ZOOKEEPER_JAR", raising=False)
    with pytest.raises(ZooKeeperNotFound) as missing:
        find_zookeeper(tmp_path / "nowhere" / "zookeeper.jar")
    message = str(missing.value)
    assert str(tmp_path / "nowhere" / "zookeeper.jar") in message
    assert "apt-get install zookeeper" in message and "PYBROKER_ZOOKEEPER_JAR" in message

    monkeypatch.setenv("PYBROKER_ZOOKEEPER_JAR", str(tmp_path / "elsewhere.jar"))
    with pytest.raises(ZooKeeperNotFound, match="elsewhere.jar"):
        ZooKeeperServer(tmp_path / "zk").start()

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ZooKeeperNotFound, match="no `java` on PATH"):
        find_zookeeper()


def test_the_default_is_debians_jar_and_a_folder_of_jars_is_accepted(tmp_path, monkeypatch):
    monkeypatch.delenv("PYBROKER_ZOOKEEPER_JAR", raising=False)
    assert find_zookeeper().split(os.pathsep)[0] == "/usr/share/java/zookeeper.jar"
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "zookeeper-3.8.4.jar").write_bytes(b"")
    assert find_zookeeper(tmp_path / "lib") == str(tmp_path / "lib" / "*")


def test_a_server_that_dies_at_start_says_why(tmp_path):
    empty = tmp_path / "empty.jar"
    empty.write_bytes(b"")
    server = ZooKeeperServer(tmp_path / "zk", classpath=str(empty))
    server.start()
    try:
        with pytest.raises(RuntimeError, match="ZooKeeper exited with 1(.|\n)*ZooKeeperServerMain"):
            server.wait_ready(60)
    finally:
        server.kill()


def test_a_launcher_killed_with_minus_9_leaves_no_zookeeper(tmp_path):
    """ZooKeeper dies with whatever started it (a `pybroker cluster` killed -9)."""
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import sys, time\n"
        "from pybroker.zk.server import ZooKeeperServer\n"
        f"s = ZooKeeperServer({str(tmp_path / 'zk')!r})\n"
        "s.start(); s.wait_ready(60)\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    launcher = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    zk_pid = None
    try:
        zk_pid = int(launcher.stdout.readline())
        assert not gone(zk_pid)
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(10)
        deadline = time.monotonic() + 30
        while not gone(zk_pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the process table, bounded by the deadline
        assert gone(zk_pid), "ZooKeeper outlived the process that started it"
    finally:
        launcher.kill()
        launcher.wait(10)
        if zk_pid is not None and not gone(zk_pid):
            os.kill(zk_pid, signal.SIGKILL)
