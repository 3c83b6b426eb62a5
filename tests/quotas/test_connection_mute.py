"""A connection over its quota, on Trio's mock clock (no real waiting):
its answer leaves at once with the throttle time in it, and the next
request is not read until that time is over (KIP-219), while another
client id's connection carries on."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from pybroker.protocol.messages.metadata_request import MetadataRequest
from tests.broker.raw_requests import produce_request
from tests.server.memory import connect, make_broker

METADATA, PRODUCE = 3, 0


@pytest.fixture
def broker(tmp_path):
    b = make_broker(tmp_path / "data", auto_create_topics_enable="true")
    yield b
    b.logs.close()


async def test_a_throttled_connection_reads_nothing_until_the_time_is_over(broker, nursery, autojump_clock):
    # The memory client's id is "memory": 1000 bytes/s for it.
    await broker.client_quotas.set_many({(None, "memory"): {"producer_byte_rate": "1000"}})
    assert broker.server.quotas.active
    client = connect(nursery, broker.server)
    await client.send(MetadataRequest(topics=None), 9, 0)
    await client.receive(METADATA, 9, 0)
    await client.send(produce_request("t", 0, [b"x" * 12_000]), 9, 1)
    body = await client.receive(PRODUCE, 9, 1)
    throttle = body.throttle_time_ms
    # About 12 KB over ten 1 s windows against 1000 bytes/s: 2 s more.
    assert 1_900 < throttle < 2_500
    sent = trio.current_time()
    await client.send(MetadataRequest(topics=None), 9, 2)
    await trio.testing.wait_all_tasks_blocked()
    assert client.nothing_received()
    await client.receive(METADATA, 9, 2)
    assert trio.current_time() - sent >= throttle / 1000 - 0.01


async def test_no_quota_no_throttle(broker, nursery, autojump_clock):
    await broker.client_quotas.set_many({(None, "someone-else"): {"producer_byte_rate": "1"}})
    client = connect(nursery, broker.server)
    await client.send(produce_request("t", 0, [b"x" * 20_000]), 9, 1)
    assert (await client.receive(PRODUCE, 9, 1)).throttle_time_ms == 0
    started = trio.current_time()
    await client.send(MetadataRequest(topics=None), 9, 2)
    await client.receive(METADATA, 9, 2)
    assert trio.current_time() - started < 1
