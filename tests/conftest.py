import pytest

from pybroker.process import pybroker_process

# ZooKeeper: the session's server and each test's chroot.
from .zk_fixtures import zk, zk_admin, zk_connect, zookeeper_server  # noqa: F401


@pytest.fixture
def broker_process(tmp_path):
    """A broker in a child process with its own data dir; stopped by PID."""
    procs = []

    def make(overrides=None, data_dir=None):
        proc = pybroker_process(data_dir or tmp_path / f"data{len(procs)}", overrides)
        procs.append(proc)
        proc.start()
        return proc

    yield make
    for proc in procs:
        proc.kill()
