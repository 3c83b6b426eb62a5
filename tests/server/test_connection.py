"""A whole ``Connection`` over memory streams: real request frames in, real
responses out, through the stream path (no socket: no sendfile, no plain
descriptor reads and writes) that TLS will take as well.

Every case runs a loaded broker in this process without its listeners;
the test serves its connections. ``wait_all_tasks_blocked`` tells when the
broker has done all it can with what it was sent, so a response that must
not have come yet is checked without sleeping.
"""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing

from pybroker.handlers import Handler, Hold, load_all
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.framing import encode_request
from pybroker.protocol.messages.api_versions_request import ApiVersionsRequest
from pybroker.protocol.messages.api_versions_response import ApiVersionsResponse
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from pybroker.protocol.primitives import INT16
from pybroker.protocol.registry import ApiKey
from pybroker.server import Connection, ServerContext, _drop_sent, close_idle_connections
from tests.broker.raw_requests import fetch_request, long_poll, produce_request

from .memory import MemoryClient, connect, make_broker, records_of, values_of

API_VERSIONS, METADATA, PRODUCE, FETCH = 18, 3, 0, 1
HANDLERS = load_all()


@pytest.fixture
def brokers(tmp_path):
    made = []

    def make(**props):
        broker = make_broker(tmp_path / f"data{len(made)}", **props)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.logs.close()


@pytest.fixture
def broker(brokers):
    return brokers()




async def create(client, *topics: str) -> None:
    await client.send(MetadataRequest(topics=[MetadataRequestTopic(name=t) for t in topics]), 9, 0)
    body = await client.receive(METADATA, 9, 0)
    assert [t.error_code for t in body.topics] == [0] * len(topics)


async def produce(client, topic: str, values: list[bytes], correlation_id: int = 1) -> int:
    await client.send(produce_request(topic, 0, values), 9, correlation_id)
    body = await client.receive(PRODUCE, 9, correlation_id)
    part = body.responses[0].partition_responses[0]
    assert part.error_code == 0
    return part.base_offset


async def fetch_values(client, topic: str, offset: int = 0, correlation_id: int = 2) -> list[bytes]:
    await client.send(fetch_request(topic, [(0, offset, 1 << 20)], 1 << 20), 11, correlation_id)
    body = await client.receive(FETCH, 11, correlation_id)
    (part,) = records_of(body)
    assert part.error_code == 0
    return values_of(part.records)


async def test_api_versions_lists_every_handler(broker, nursery):
    client = connect(nursery, broker.server)
    await client.send(ApiVersionsRequest(client_software_name="memory", client_software_version="1"), 3, 7)
    body = await client.receive(API_VERSIONS, 3, 7)
    assert body.error_code == 0
    assert {(k.api_key, k.min_version, k.max_version) for k in body.api_keys} == {
        (h.api_key, h.min_version, h.max_version) for h in HANDLERS.values()
    }


async def test_metadata_creates_the_topic_asked_for(broker, nursery):
    client = connect(nursery, broker.server)
    await client.send(MetadataRequest(topics=[MetadataRequestTopic(name="made")]), 9, 3)
    body = await client.receive(METADATA, 9, 3)
    assert [(t.name, t.error_code, len(t.partitions)) for t in body.topics] == [("made", 0, 1)]
    assert broker.replicas.partition("made", 0) is not None


async def test_produced_records_come_back_as_bytes(broker, nursery):
    """On a stream without a socket the record data of a Fetch leaves as
    bytes (on TCP it goes by sendfile) and decodes to what was produced."""
    client = connect(nursery, broker.server)
    await create(client, "t")
    values = [bytes([i]) * (1000 * i + 1) for i in range(10)]
    assert await produce(client, "t", values[:6]) == 0
    assert await produce(client, "t", values[6:]) == 6
    assert await fetch_values(client, "t") == values
    assert await fetch_values(client, "t", offset=6) == values[6:]


async def test_record_data_given_as_file_regions_leaves_as_bytes(broker, nursery):
    """Regression: a handler may answer with file regions (sendfile's
    input) whatever the stream; on one without a socket they are read and
    sent as bytes instead of costing the connection."""
    client = connect(nursery, broker.server)
    await create(client, "regions")
    values = [b"x" * 70_000, b"y" * 10, b"z" * 5000]
    await produce(client, "regions", values)
    client.conn.zero_copy = True  # what a handler sees in ctx.zero_copy
    assert await fetch_values(client, "regions") == values
    # Small answers around it, coalesced with the regions, stay in order.
    for cid in range(3, 6):
        await client.send(fetch_request("regions", [(0, 0, 1 << 20)], 1 << 20), 11, cid)
        await client.send(ApiVersionsRequest(), 2, cid + 100)
    for cid in range(3, 6):
        assert values_of(next(records_of(await client.receive(FETCH, 11, cid))).records) == values
        await client.receive(API_VERSIONS, 2, cid + 100)


async def test_acks_zero_gets_no_response(broker, nursery):
    client = connect(nursery, broker.server)
    await create(client, "zero")
    await client.send(produce_request("zero", 0, [b"a", b"b"], acks=0), 9, 1)
    await client.send(ApiVersionsRequest(), 2, 2)
    # The next response is the ApiVersions: the acks=0 produce has none.
    assert await client.correlation_of_next() == 2
    assert broker.replicas.partition("zero", 0).log.log_end_offset == 2
    assert await fetch_values(client, "zero", correlation_id=3) == [b"a", b"b"]


async def test_pipelined_requests_are_answered_in_order(broker, nursery):
    client = connect(nursery, broker.server)
    await create(client, "pipe")
    for i in range(60):
        if i % 3 == 0:
            await client.send(ApiVersionsRequest(), 2, i)
        elif i % 3 == 1:
            await client.send(MetadataRequest(topics=[MetadataRequestTopic(name="pipe")]), 9, i)
        else:
            await client.send(produce_request("pipe", 0, [b"%d" % i]), 9, i)
    assert [await client.correlation_of_next() for _ in range(60)] == list(range(60))


async def test_a_long_poll_is_woken_by_a_produce_and_keeps_its_place(broker, nursery):
    """A Later answered after a later request's immediate answer still
    leaves first; the Produce that wakes it comes from another connection."""
    poller = connect(nursery, broker.server, "memory:1")
    producer = connect(nursery, broker.server, "memory:2")
    await create(poller, "poll")
    await poller.send(long_poll("poll", 30_000), 11, 1)
    await poller.send(ApiVersionsRequest(), 2, 2)
    await trio.testing.wait_all_tasks_blocked()
    # The ApiVersions is answered, but waits behind the long poll.
    assert poller.nothing_received()
    assert poller.conn.idle_since(time.monotonic() + 3600) == 0  # working, not idle
    assert await produce(producer, "poll", [b"wake"]) == 0
    body = await poller.receive(FETCH, 11, 1)
    assert values_of(next(records_of(body)).records) == [b"wake"]
    await poller.receive(API_VERSIONS, 2, 2)


async def test_a_hold_is_finished_before_the_next_request_is_read(broker, nursery):
    """A Hold's connection reads nothing more until it is done, while what
    was answered before it reaches the client. The Hold wraps the real
    Produce handler, released by the test."""
    release = trio.Event()
    real = broker.handlers[ApiKey.PRODUCE]

    def held_produce(ctx, req):
        async def run():
            await release.wait()
            return real.fn(ctx, req)

        return Hold(run)

    table = dict(broker.handlers)
    table[ApiKey.PRODUCE] = Handler(real.api_key, real.min_version, real.max_version, held_produce)
    server = ServerContext.from_config(broker.config, table)
    client = connect(nursery, server)
    await create(client, "held")
    await client.send(ApiVersionsRequest(), 2, 1)
    await client.send(produce_request("held", 0, [b"first"]), 9, 2)
    await client.send(fetch_request("held", [(0, 0, 1 << 20)], 1 << 20), 11, 3)
    await trio.testing.wait_all_tasks_blocked()
    await client.receive(API_VERSIONS, 2, 1)
    assert client.nothing_received()
    assert broker.replicas.partition("held", 0).log.log_end_offset == 0
    assert client.conn.idle_since(time.monotonic() + 3600) == 0  # held: working, not idle
    release.set()
    part = (await client.receive(PRODUCE, 9, 2)).responses[0].partition_responses[0]
    assert (part.error_code, part.base_offset) == (0, 0)
    # Read only once the Hold was done: it sees the record.
    assert values_of(next(records_of(await client.receive(FETCH, 11, 3))).records) == [b"first"]


def _with_api(frame: bytes, api_key: int, version: int) -> bytes:
    data = bytearray(frame)
    INT16.pack_into(data, 4, api_key)
    INT16.pack_into(data, 6, version)
    return bytes(data)


@pytest.mark.parametrize(
    "api_key, version",
    [
        (next(k for k in range(32767, 0, -1) if k not in HANDLERS), 0),  # an API we do not serve
        (ApiKey.METADATA, HANDLERS[ApiKey.METADATA].max_version + 1),  # a version without a schema
        (ApiKey.FETCH, 0),  # a version below what we serve
    ],
)
async def test_an_unsupported_request_closes_the_connection(broker, nursery, api_key, version):
    client = connect(nursery, broker.server)
    await client.send(ApiVersionsRequest(), 2, 1)
    await client.send_raw(_with_api(encode_request(ApiVersionsRequest(), 0, 2), api_key, version))
    await client.send(ApiVersionsRequest(), 2, 3)
    assert await client.correlation_of_next() == 1
    assert await client.closed_by_broker()
    other = connect(nursery, broker.server, "memory:2")
    await other.send(ApiVersionsRequest(), 2, 4)
    await other.receive(API_VERSIONS, 2, 4)


async def test_an_unknown_api_versions_version_is_answered_in_v0(broker, nursery):
    """KIP-511: UNSUPPORTED_VERSION and our ApiVersions range, in v0."""
    client = connect(nursery, broker.server)
    await client.send_raw(_with_api(encode_request(ApiVersionsRequest(), 0, 5), ApiKey.API_VERSIONS, 99))
    body = await client.receive(API_VERSIONS, 0, 5)
    assert isinstance(body, ApiVersionsResponse) and body.error_code == ErrorCode.UNSUPPORTED_VERSION
    h = HANDLERS[ApiKey.API_VERSIONS]
    assert [(k.api_key, k.min_version, k.max_version) for k in body.api_keys] == [(18, h.min_version, h.max_version)]
    await client.send(ApiVersionsRequest(), 2, 6)
    await client.receive(API_VERSIONS, 2, 6)


async def test_a_frame_over_the_request_limit_closes_the_connection(brokers, nursery):
    broker = brokers(socket_request_max_bytes="2000")
    client = connect(nursery, broker.server)
    await create(client, "big")
    assert await produce(client, "big", [b"s" * 1000]) == 0
    await client.send(produce_request("big", 0, [b"b" * 2000]), 9, 2)
    assert await client.closed_by_broker()
    assert broker.replicas.partition("big", 0).log.log_end_offset == 1
    # The limit counts the frame, not the connection: a size prefix alone is enough.
    other = connect(nursery, broker.server, "memory:2")
    await other.send_raw((2001).to_bytes(4, "big"))
    assert await other.closed_by_broker()


async def test_idle_connections_are_closed(brokers, nursery):
    """connections.max.idle.ms closes a connection without traffic, not one
    whose long poll is being worked out."""
    broker = brokers(connections_max_idle_ms="200")
    nursery.start_soon(close_idle_connections, broker.server)
    idle = connect(nursery, broker.server, "memory:1")
    polling = connect(nursery, broker.server, "memory:2")
    await create(polling, "idle")
    await idle.send(ApiVersionsRequest(), 2, 1)
    await idle.receive(API_VERSIONS, 2, 1)
    await polling.send(long_poll("idle", 30_000), 11, 2)
    assert await idle.closed_by_broker()  # within the client's deadline
    # Five idle periods more: the long poll is neither closed nor answered.
    with trio.move_on_after(1.0) as waited:
        await polling.frame()
    assert waited.cancelled_caught
    await polling.send(produce_request("idle", 0, [b"late"]), 9, 3)
    (part,) = records_of(await polling.receive(FETCH, 11, 2))
    assert values_of(part.records) == [b"late"]
    await polling.receive(PRODUCE, 9, 3)
    assert await polling.closed_by_broker()  # idle in its turn
    assert broker.server.connections == set()


async def test_shutdown_answers_what_was_read_and_reads_no_more(broker, nursery):
    client = connect(nursery, broker.server, "memory:1")
    await create(client, "down")
    await client.send(ApiVersionsRequest(), 2, 1)
    await client.send(long_poll("down", 300), 11, 2)
    await trio.testing.wait_all_tasks_blocked()
    broker.server.stop_reading()  # what Broker.run does at shutdown
    await client.send(ApiVersionsRequest(), 2, 3)
    assert await client.correlation_of_next() == 1
    (part,) = records_of(await client.receive(FETCH, 11, 2))
    assert part.error_code == 0 and values_of(part.records) == []
    assert await client.closed_by_broker()  # the request sent after it was never read
    late = connect(nursery, broker.server, "memory:2")
    await late.send(ApiVersionsRequest(), 2, 4)
    assert await late.closed_by_broker()
    assert broker.server.connections == set()


async def test_a_connection_knows_its_peer_under_a_wrapping_stream(broker, nursery):
    """The peer's address is the socket's, also under a stream that wraps
    it as TLS does (``transport_stream``); a memory stream has none."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    accepted = await listener.accept()

    class Wrapping:
        transport_stream = accepted

    host, client_port = client.socket.getsockname()[:2]
    wrapped = Connection(broker.server, Wrapping())
    assert wrapped.peer == f"{host}:{client_port}"
    assert wrapped.sock is None and not wrapped.zero_copy  # no socket of its own: no sendfile
    assert Connection(broker.server, trio.testing.memory_stream_pair()[0]).peer == "?"
    for stream in (client, accepted, listener):
        await stream.aclose()


async def test_a_client_that_does_not_read_stops_the_reading(brokers, nursery):
    """queued.max.requests: once that many answers wait for a client that
    reads none (a lockstep stream buffers nothing), the connection reads
    no further request; when the client reads, every one is answered, in order."""
    broker = brokers(queued_max_requests="2")
    real = broker.handlers[ApiKey.API_VERSIONS]
    handled = []

    def counted(ctx, req):
        handled.append(ctx.correlation_id)
        return real.fn(ctx, req)

    table = dict(broker.handlers)
    table[ApiKey.API_VERSIONS] = Handler(real.api_key, real.min_version, real.max_version, counted)
    server = ServerContext.from_config(broker.config, table)
    ours, theirs = trio.testing.lockstep_stream_pair()
    conn = Connection(server, theirs, "memory:1")
    nursery.start_soon(conn.serve)
    client = MemoryClient(ours, conn)
    requests = b"".join(encode_request(ApiVersionsRequest(), 2, i) for i in range(40))
    nursery.start_soon(client.send_raw, requests)
    await trio.testing.wait_all_tasks_blocked()
    # In the writer's send: the answer it waited for and those it gathered
    # behind it (a full queue and the one waiting to enter it); behind
    # that, a full queue again and the one the reader waits to queue.
    assert 0 < len(handled) <= 1 + (2 + 1) + (2 + 1)
    nursery.start_soon(client.collect)
    assert [await client.correlation_of_next() for _ in range(40)] == list(range(40))
    assert handled == list(range(40))


def test_an_empty_buffer_left_after_a_send_is_dropped():
    # A v0 SASL answer is empty: left in front, writev would send 0 bytes
    # of it for ever (the connection's writer spun at 100% CPU).
    assert _drop_sent([b"abcd", b""], 4) == []
    assert _drop_sent([b"abcd", b"", b"ef"], 4) == [b"ef"]
    assert _drop_sent([b"", b"xy"], 0) == [b"xy"]
    assert bytes(_drop_sent([b"abcd", b"ef"], 2)[0]) == b"cd"
