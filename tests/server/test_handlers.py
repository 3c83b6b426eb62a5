"""Handlers called directly, with no connection and no stream: bound by
``pybroker.handlers.bind`` to a table of services, given a RequestContext
and a request decoded from real frame bytes, as a connection would."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from pybroker.handlers import Later, bind, load_all
from pybroker.protocol.framing import decode_request, encode_request
from pybroker.protocol.messages.api_versions_request import ApiVersionsRequest
from pybroker.protocol.messages.api_versions_response import ApiVersionsResponse
from pybroker.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from pybroker.protocol.messages.fetch_response import FetchResponse
from pybroker.protocol.messages.produce_response import ProduceResponse
from pybroker.protocol.registry import ApiKey
from pybroker.server import RequestContext
from tests.broker.raw_requests import fetch_request, produce_request

from .memory import make_broker, records_of, values_of


@pytest.fixture
def broker(tmp_path):
    broker = make_broker(tmp_path)
    broker.topics.create_topic("t", 1)
    yield broker
    broker.logs.close()


def call(handlers, body, version: int, correlation_id: int = 1):
    """What a connection does with one request frame: decode it, make the
    context, run the bound handler."""
    # Writable, as the frame buffers a connection decodes from are.
    header, request = decode_request(memoryview(bytearray(encode_request(body, version, correlation_id, "direct")))[4:])
    ctx = RequestContext(header, "direct:0", zero_copy=False)
    return handlers[header.request_api_key].fn(ctx, request)


def test_api_versions_needs_no_service():
    """Bound to a table in which every service is a stand-in: ApiVersions
    answers from the handler registry alone."""
    stand_ins = {name: object() for h in load_all().values() for name in h.services}
    handlers = bind(stand_ins)
    response = call(handlers, ApiVersionsRequest(client_software_name="direct", client_software_version="1"), 3)
    assert isinstance(response, ApiVersionsResponse) and response.error_code == 0
    assert {k.api_key for k in response.api_keys} == set(load_all())


def test_bind_refuses_a_missing_service(monkeypatch):
    """A handler asking for a service nobody provides is found at binding."""
    from pybroker import handlers as registry

    real = load_all()[ApiKey.DESCRIBE_CLUSTER]
    everything = {name: object() for h in load_all().values() for name in h.services}

    def wants_more(ctx, req, *, nowhere):
        raise AssertionError("never called")

    monkeypatch.setitem(
        registry.HANDLERS,
        ApiKey.DESCRIBE_CLUSTER,
        registry.Handler(real.api_key, real.min_version, real.max_version, wants_more, ("nowhere",)),
    )
    with pytest.raises(LookupError, match="nowhere"):
        bind(everything)


def test_produce_then_fetch(broker):
    handlers = bind(broker.services())
    produced = call(handlers, produce_request("t", 0, [b"a", b"b", b"c"]), 9)
    assert isinstance(produced, ProduceResponse)
    part = produced.responses[0].partition_responses[0]
    assert (part.error_code, part.base_offset) == (0, 0)
    fetched = call(handlers, fetch_request("t", [(0, 1, 1 << 20)], 1 << 20), 11)
    assert isinstance(fetched, FetchResponse)
    (p,) = records_of(fetched)
    assert p.high_watermark == 3
    # Whole batches from the one holding offset 1; without zero copy, as bytes.
    assert isinstance(p.records, (bytes, bytearray, memoryview))
    assert values_of(p.records) == [b"a", b"b", b"c"]


def test_acks_zero_answers_nothing(broker):
    handlers = bind(broker.services())
    assert call(handlers, produce_request("t", 0, [b"quiet"], acks=0), 9) is None
    assert broker.replicas.partition("t", 0).log.log_end_offset == 1


async def test_a_long_poll_is_a_later_woken_by_a_produce(broker):
    handlers = bind(broker.services())
    poll = FetchRequest(
        max_wait_ms=30_000,
        min_bytes=1,
        max_bytes=1 << 20,
        topics=[
            FetchTopic(topic="t", partitions=[FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])
        ],
    )
    later = call(handlers, poll, 11)
    assert isinstance(later, Later)
    answers = []

    async def wait():
        answers.append(await later.run())

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            assert answers == []
            call(handlers, produce_request("t", 0, [b"wake"]), 9, correlation_id=2)
    (p,) = records_of(answers[0])
    assert values_of(p.records) == [b"wake"]
