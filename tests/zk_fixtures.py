"""ZooKeeper for the tests: one server for the whole session, and a chroot
of its own for each test, so that no test sees another's znodes.

    async def test_x(zk_connect, zk_admin):     # "127.0.0.1:PORT/t-<id>", a kazoo client in that chroot
        zk = ZkClient(zk_connect); await zk.connect()

Tests set up and inspect znodes with ``zk_admin`` (plain kazoo, synchronous);
pybroker itself reaches ZooKeeper only through pybroker.zk. A test that stops
or restarts ZooKeeper makes its own ``ZooKeeperServer``.
"""

import shutil
import tempfile
import uuid

import pytest
from kazoo.client import KazooClient

from pybroker.zk import ZkClient
from pybroker.zk.server import ZooKeeperServer


@pytest.fixture(scope="session")
def zookeeper_server():
    data_dir = tempfile.mkdtemp(prefix="pybroker-zk-")
    server = ZooKeeperServer(data_dir)
    try:
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def zk_connect(zookeeper_server) -> str:
    """A connect string with a chroot no other test uses; the chroot does not exist yet."""
    return f"{zookeeper_server.connect}/t-{uuid.uuid4().hex[:12]}"


def kazoo_client(connect: str, timeout: float = 10.0) -> KazooClient:
    """A started kazoo client; its chroot is created first if missing."""
    hosts, _, chroot = connect.partition("/")
    if chroot:
        root = KazooClient(hosts=hosts)
        root.start(timeout)
        try:
            root.ensure_path("/" + chroot)
        finally:
            root.stop()
            root.close()
    client = KazooClient(hosts=connect)
    client.start(timeout)
    return client


@pytest.fixture
def zk_admin(zk_connect):
    client = kazoo_client(zk_connect)
    try:
        yield client
    finally:
        client.stop()
        client.close()


@pytest.fixture
async def zk(zk_connect):
    """A connected ZkClient in the test's chroot (6 s session), closed after the test."""
    client = ZkClient(zk_connect, session_timeout_ms=6000)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()
