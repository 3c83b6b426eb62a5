"""pytest plugin shipped with pybroker: the ``kafka_broker`` and ``kafka_cluster`` fixtures.

Enabled automatically when pybroker is installed (entry point
``pytest11``). ``kafka_broker``: one broker per test module, in this
process, on a free loopback port. ``kafka_cluster``: one local cluster per
test module (ZooKeeper and three broker processes; needs Java and
ZooKeeper, e.g. ``apt-get install zookeeper``); its ``bootstrap_servers``
lists every broker, and ``brokers[i]`` can be killed, paused and restarted.
"""

import pytest

from .testing import running_broker, running_cluster


@pytest.fixture(scope="module")
def kafka_broker():
    with running_broker() as broker:
        yield broker


@pytest.fixture(scope="module")
def kafka_cluster():
    with running_cluster(3) as cluster:
        yield cluster
