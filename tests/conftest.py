import pytest

from pybroker.process import pybroker_process

from .tls_certs import make_certs

# ZooKeeper: the session's server and each test's chroot.
from .zk_fixtures import zk, zk_admin, zk_connect, zookeeper_server  # noqa: F401


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA with server, client and stranger certificates (tls_certs), one
    set a test module."""
    return make_certs(tmp_path_factory.mktemp("certs"))


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
