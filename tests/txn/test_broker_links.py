"""BrokerLinks, the coordinator's and leaders' connections to the other
brokers: a connection the other broker closed (it restarted since the
last call) is opened afresh, not answered as a failure, which a leader
verifying a transactional batch would turn into a spurious
NOT_ENOUGH_REPLICAS."""

from __future__ import annotations

from types import SimpleNamespace

import trio

from pybroker.protocol.messages.api_versions_request import ApiVersionsRequest
from pybroker.testing import running_broker
from pybroker.txn.links import BrokerLinks


def test_a_link_to_a_restarted_broker_is_reopened():
    where = SimpleNamespace(host="127.0.0.1", port=0)
    links = BrokerLinks(lambda node: where if node == 1 else None, "links-test")

    async def ask():
        response = await links.call(1, ApiVersionsRequest(), 0)
        assert response.error_code == 0 and response.api_keys

    with running_broker() as first:
        where.port = first.port
        trio.run(ask)
    with running_broker({"listeners": f"PLAINTEXT://127.0.0.1:{where.port}"}):
        # The link opened to the first broker is still held, closed by its peer.
        trio.run(ask)
