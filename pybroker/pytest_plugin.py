"""pytest plugin shipped with pybroker: Kafka brokers as fixtures.

Enabled automatically when pybroker is installed (entry point
``pytest11``).

- ``kafka_broker``: one broker per test module, in this process, on a free
  loopback port; ``kafka_broker.bootstrap_servers`` is what clients need.
- ``kafka_broker_factory``: a function starting a broker with a test's own
  Kafka properties, ``kafka_broker_factory({"num.partitions": "3"})``;
  every broker it started is stopped when the fixture's scope ends. It
  comes in three scopes: ``kafka_broker_factory`` (function),
  ``kafka_broker_factory_module`` and ``kafka_broker_factory_session``.
- ``kafka_cluster``: one local cluster per test module (ZooKeeper and
  three broker processes; needs Java and ZooKeeper, e.g. ``apt-get install
  zookeeper``); its ``bootstrap_servers`` lists every broker, and
  ``brokers[i]`` can be killed, paused and restarted.

Every broker gets the developer defaults of ``pybroker --dev``
(``pybroker.config.DEV_DEFAULTS``: no initial rebalance delay, so a new
consumer group gets its first message at once; small internal topics),
beneath the properties a test gives.

pytest loads this module in every session of an environment where
pybroker is installed, so it imports nothing of the broker until a
fixture is used.
"""

import contextlib

import pytest


@pytest.fixture(scope="module")
def kafka_broker():
    from .testing import running_broker

    with running_broker(dev=True) as broker:
        yield broker


def _factory():
    from .testing import running_broker

    with contextlib.ExitStack() as started:

        def start(props=None, data_dir=None):
            """A new running broker (``pybroker.testing.RunningBroker``)."""
            return started.enter_context(running_broker(props, data_dir=data_dir, dev=True))

        yield start


@pytest.fixture
def kafka_broker_factory():
    yield from _factory()


@pytest.fixture(scope="module")
def kafka_broker_factory_module():
    yield from _factory()


@pytest.fixture(scope="session")
def kafka_broker_factory_session():
    yield from _factory()


@pytest.fixture(scope="module")
def kafka_cluster():
    from .config import DEV_DEFAULTS
    from .testing import running_cluster

    with running_cluster(3, props=dict(DEV_DEFAULTS)) as cluster:
        yield cluster
