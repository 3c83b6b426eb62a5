import pytest

from tests.broker_process import BrokerProcess


@pytest.fixture
def broker_process(tmp_path):
    """A broker in a child process with its own data dir; stopped by PID."""
    procs = []

    def make(overrides=None, data_dir=None):
        proc = BrokerProcess(data_dir or tmp_path / f"data{len(procs)}", overrides)
        procs.append(proc)
        return proc.start()

    yield make
    for proc in procs:
        proc.kill()
