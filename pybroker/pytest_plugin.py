"""pytest plugin shipped with pybroker: the ``kafka_broker`` fixture.

Enabled automatically when pybroker is installed (entry point
``pytest11``); one broker per test module, on a free loopback port.
"""

import pytest

from .testing import running_broker


@pytest.fixture(scope="module")
def kafka_broker():
    with running_broker() as broker:
        yield broker
