"""pytest plugin shipped with pybroker: the ``kafka_broker`` and ``kafka_cluster`` fixtures.

Enabled automatically when pybroker is installed (entry point
``pytest11``). ``kafka_broker``: one broker per test module, in this
process, on a free loopback port. ``kafka_cluster``: one local cluster per
test module (ZooKeeper and three broker processes; needs Java and
ZooKeeper, e.g. ``apt-get install zookeeper``); its ``bootstrap_servers``
lists every broker, and ``brokers[i]`` can be killed, paused and restarted.

pytest loads this module in every session of an environment where
pybroker is installed, so it imports nothing of the broker until a
fixture is used.
"""

import pytest


@pytest.fixture(scope="module")
def kafka_broker():
    from .testing import running_broker

    with running_broker() as broker:
        yield broker


@pytest.fixture(scope="module")
def kafka_cluster():
    from .testing import running_cluster

    with running_cluster(3) as cluster:
        yield cluster
