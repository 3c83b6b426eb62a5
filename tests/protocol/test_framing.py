"""Tests for protocol.framing: the size-prefixed stream and the headers.

Header layouts are from Kafka's RequestHeader.json / ResponseHeader.json and
the ApiVersions exception (ApiVersionsResponse.json, CLIENTS.md §1).
"""

from __future__ import annotations

import struct
import tracemalloc

import pytest

from pybroker.protocol import framing
from pybroker.protocol.errors import DecodeError, FrameTooLargeError, ProtocolError, UnsupportedVersionError
from pybroker.protocol.framing import (
    FrameDecoder,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    peek_request,
)
from pybroker.protocol.messages.api_versions_request import ApiVersionsRequest
from pybroker.protocol.messages.api_versions_response import ApiVersion, ApiVersionsResponse
from pybroker.protocol.messages.controlled_shutdown_request import ControlledShutdownRequest
from pybroker.protocol.messages.fetch_response import FetchableTopicResponse, FetchResponse, PartitionData
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from pybroker.protocol.messages.metadata_response import MetadataResponse
from pybroker.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData
from pybroker.protocol.messages.request_header import RequestHeader
from pybroker.protocol.registry import api_info, request_header_version, response_header_version


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def joined(chunks) -> bytes:
    return b"".join(bytes(c) for c in chunks)


def drain(dec: FrameDecoder) -> list[bytes]:
    out = []
    while (f := dec.next_frame()) is not None:
        out.append(bytes(f))
    return out


# -- FrameDecoder ------------------------------------------------------------------

PAYLOADS = [b"", b"a", b"\x00\x01\x02\x03", bytes(range(256)) * 3, b"z" * 70]
STREAM = b"".join(frame(p) for p in PAYLOADS)


def test_several_frames_in_one_feed():
    dec = FrameDecoder()
    dec.feed(STREAM)
    assert drain(dec) == PAYLOADS
    assert dec.buffered == 0


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_split_at_every_byte(cut):
    dec = FrameDecoder()
    dec.feed(STREAM[:cut])
    got = drain(dec)
    # only the frames wholly inside the first part come out
    whole, pos = 0, 0
    for p in PAYLOADS:
        if pos + 4 + len(p) > cut:
            break
        pos += 4 + len(p)
        whole += 1
    assert got == PAYLOADS[:whole]
    assert dec.buffered == cut - pos
    dec.feed(STREAM[cut:])
    assert got + drain(dec) == PAYLOADS
    assert dec.buffered == 0


def test_one_byte_at_a_time():
    dec = FrameDecoder()
    got = []
    for i in range(len(STREAM)):
        dec.feed(STREAM[i : i + 1])
        got += drain(dec)
    assert got == PAYLOADS


def test_accepts_bytearray_and_memoryview_feeds():
    dec = FrameDecoder()
    dec.feed(bytearray(STREAM[:10]))
    dec.feed(memoryview(STREAM)[10:])
    assert drain(dec) == PAYLOADS


def test_frame_stays_valid_after_more_feeds():
    dec = FrameDecoder()
    dec.feed(frame(b"first"))
    first = dec.next_frame()
    for i in range(2000):  # enough for the decoder to compact its buffer
        dec.feed(frame(b"%05d" % i * 20))
        assert bytes(dec.next_frame()) == b"%05d" % i * 20
    assert bytes(first) == b"first"


def test_long_stream_does_not_accumulate():
    dec = FrameDecoder()
    for i in range(3000):
        dec.feed(frame(i.to_bytes(4, "big") * 50))
        assert bytes(dec.next_frame()) == i.to_bytes(4, "big") * 50
    assert dec.buffered == 0
    dec.feed(b"\x00\x00")  # a partial prefix after all that
    assert dec.next_frame() is None and dec.buffered == 2


def test_frame_at_the_limit_is_accepted():
    dec = FrameDecoder(max_frame_size=10)
    dec.feed(frame(b"0123456789"))
    assert bytes(dec.next_frame()) == b"0123456789"


def test_frame_over_the_limit_is_refused_from_its_prefix():
    dec = FrameDecoder(max_frame_size=10)
    dec.feed(struct.pack(">i", 11))
    with pytest.raises(FrameTooLargeError) as info:
        dec.next_frame()
    assert (info.value.size, info.value.limit) == (11, 10)


def test_two_gib_prefix_refused_without_allocation():
    """A client declaring a 2 GiB frame is refused when its 4-byte prefix is in,
    before a single body byte arrives and before any buffer grows for it."""
    prefix = struct.pack(">i", 2**31 - 1)
    dec = FrameDecoder()  # the default limit, 100 MiB
    tracemalloc.start()
    try:
        for i in range(3):
            dec.feed(prefix[i : i + 1])
            assert dec.next_frame() is None  # not yet 4 bytes: no verdict
        dec.feed(prefix[3:])
        with pytest.raises(FrameTooLargeError) as info:
            dec.next_frame()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.size == 2**31 - 1
    assert info.value.limit == framing.DEFAULT_MAX_FRAME
    assert peak < 64 * 1024
    assert isinstance(info.value, ProtocolError)


@pytest.mark.parametrize("size", [-1, -2, -(2**31)])
def test_negative_size(size):
    dec = FrameDecoder()
    dec.feed(struct.pack(">i", size) + b"abc")
    with pytest.raises(DecodeError):
        dec.next_frame()


def test_zero_size_frame():
    dec = FrameDecoder()
    dec.feed(b"\x00\x00\x00\x00")
    assert bytes(dec.next_frame()) == b""


# -- request headers -------------------------------------------------------------------


def test_request_header_v0_controlled_shutdown_v0():
    """ControlledShutdown v0 predates the client id: header v0 is key,
    version and correlation id only."""
    body = ControlledShutdownRequest(broker_id=3)
    wire = encode_request(body, 0, correlation_id=42)
    assert wire == frame(b"\x00\x07\x00\x00\x00\x00\x00\x2a" + b"\x00\x00\x00\x03")
    header, decoded = decode_request(memoryview(wire)[4:])
    assert (header.request_api_key, header.request_api_version, header.correlation_id) == (7, 0, 42)
    assert header.client_id == ""  # absent in v0: the schema default
    assert decoded.broker_id == 3
    # v1 of the same API has a client id
    wire = encode_request(ControlledShutdownRequest(broker_id=3), 1, correlation_id=42, client_id="c")
    assert wire[4:15] == b"\x00\x07\x00\x01\x00\x00\x00\x2a\x00\x01c"


def test_request_header_v1():
    body = MetadataRequest(topics=[MetadataRequestTopic(name="t")])
    wire = encode_request(body, 1, correlation_id=-1, client_id="my-client")
    head = b"\x00\x03\x00\x01\xff\xff\xff\xff\x00\x09my-client"
    assert wire[4 : 4 + len(head)] == head
    header, decoded = decode_request(memoryview(wire)[4:])
    assert header.client_id == "my-client" and header.correlation_id == -1
    assert [t.name for t in decoded.topics] == ["t"]


@pytest.mark.parametrize("client_id,encoded", [(None, b"\xff\xff"), ("", b"\x00\x00"), ("\u00e9", b"\x00\x02\xc3\xa9")])
def test_request_header_v2_client_id_is_not_compact(client_id, encoded):
    """Header v2 (flexible bodies) keeps the int16-length nullable client id,
    then a tagged-field section."""
    wire = encode_request(ApiVersionsRequest(client_software_name="n", client_software_version="1"), 3, 5, client_id)
    expected = b"\x00\x12\x00\x03\x00\x00\x00\x05" + encoded + b"\x00" + b"\x02n\x021\x00"
    assert wire == frame(expected)
    header, body = decode_request(memoryview(wire)[4:])
    assert header.client_id == client_id
    assert header.unknown_tags is None
    assert (body.client_software_name, body.client_software_version) == ("n", "1")


def test_request_header_v2_unknown_tags_survive():
    tags = b"\x02" + b"\x01\x03abc" + b"\x07\x00"  # tag 1 = b"abc", tag 7 = b""
    payload = b"\x00\x12\x00\x04\x00\x00\x00\x09\x00\x02id" + tags + b"\x02n\x021\x00"
    header, body = decode_request(memoryview(frame(payload))[4:])
    assert header.unknown_tags == {1: b"abc", 7: b""}
    assert header.client_id == "id"
    assert body.client_software_name == "n"
    # and they are written back unchanged
    assert header.encode(2) == payload[: 12 + len(tags)]


def test_request_header_version_follows_the_body():
    produce = ProduceRequest(acks=1, timeout_ms=1, topic_data=[TopicProduceData(name="t", partition_data=[])])
    v8 = encode_request(produce, 8, 1, "c")  # header v1: no tag byte after client id
    v9 = encode_request(produce, 9, 1, "c")  # header v2
    assert v8[4:15] == b"\x00\x00\x00\x08\x00\x00\x00\x01\x00\x01c"
    assert v9[4:16] == b"\x00\x00\x00\x09\x00\x00\x00\x01\x00\x01c\x00"
    for wire, version in ((v8, 8), (v9, 9)):
        header, body = decode_request(memoryview(wire)[4:])
        assert header.request_api_version == version and body.topic_data[0].name == "t"


def test_truncated_request_header():
    wire = encode_request(MetadataRequest(topics=None), 4, 1, "client")
    for n in range(4, len(wire)):
        with pytest.raises(DecodeError):
            decode_request(memoryview(wire)[4:n])


# -- response headers ------------------------------------------------------------------


def test_response_header_v0_and_v1():
    body = MetadataResponse(throttle_time_ms=0, brokers=[], cluster_id=None, controller_id=1, topics=[])
    v8 = joined(encode_response(body, 8, correlation_id=17))
    v9 = joined(encode_response(body, 9, correlation_id=17))
    assert v8[4:8] == b"\x00\x00\x00\x11" and v8[8:12] == b"\x00\x00\x00\x00"  # straight into the body
    assert v9[4:9] == b"\x00\x00\x00\x11\x00"  # header v1: empty tagged fields
    assert struct.unpack(">i", v9[:4])[0] == len(v9) - 4
    for wire, version in ((v8, 8), (v9, 9)):
        header, back = decode_response(3, version, memoryview(wire)[4:])
        assert header.correlation_id == 17
        assert back == body


@pytest.mark.parametrize("version", range(5))
def test_api_versions_response_header_is_always_v0(version):
    body = ApiVersionsResponse(error_code=0, api_keys=[ApiVersion(api_key=18, min_version=0, max_version=4)])
    wire = joined(encode_response(body, version, correlation_id=3))
    assert wire[4:8] == b"\x00\x00\x00\x03"
    assert wire[8:10] == b"\x00\x00"  # error code right after the correlation id
    header, back = decode_response(18, version, memoryview(wire)[4:])
    assert header.correlation_id == 3 and back.api_keys == body.api_keys
    assert response_header_version(18, version) == 0


def test_api_versions_error_reply_in_v0_format():
    """What a broker sends for ApiVersions above its max: a v0 body, whatever
    the request version, with api_key given explicitly."""
    body = ApiVersionsResponse(error_code=35, api_keys=[ApiVersion(api_key=18, min_version=0, max_version=4)])
    wire = joined(encode_response(body, 0, correlation_id=8, api_key=18))
    assert wire == frame(b"\x00\x00\x00\x08" + b"\x00\x23" + b"\x00\x00\x00\x01" + b"\x00\x12\x00\x00\x00\x04")


# -- peek / unknown keys and versions ---------------------------------------------------


@pytest.mark.parametrize("key,version", [(999, 0), (-1, 3), (88, 0), (18, 99), (0, -1), (32767, 32767)])
def test_peek_request_reads_any_key_and_version(key, version):
    payload = struct.pack(">hhi", key, version, 123456) + b"\x00\x03abc" + b"garbage"
    assert peek_request(memoryview(payload)) == (key, version, 123456)
    assert peek_request(payload) == (key, version, 123456)


def test_peek_request_too_short():
    for n in range(8):
        with pytest.raises(DecodeError):
            peek_request(b"\x00" * n)


@pytest.mark.parametrize("key", [88, 999, -1, 32767])
def test_decode_request_unknown_key(key):
    payload = struct.pack(">hhi", key, 0, 1) + b"\x00\x00"
    with pytest.raises(UnsupportedVersionError):
        decode_request(payload)
    assert peek_request(payload) == (key, 0, 1)


@pytest.mark.parametrize("key,version", [(0, 12), (0, 99), (18, 5), (3, -1), (7, 4)])
def test_decode_request_unsupported_version(key, version):
    payload = struct.pack(">hhi", key, version, 1) + b"\x00\x00" + b"\x00" * 16
    with pytest.raises(UnsupportedVersionError):
        decode_request(payload)


def test_api_versions_above_max_still_yields_its_header():
    """The broker must answer ApiVersions v5+ (with a v0 error body), so its
    header must be readable though the body is not."""
    payload = struct.pack(">hhi", 18, 5, 77) + b"\x00\x01c" + b"\x00" + b"\x02n\x021\x00"
    header, pos = framing.decode_request_header(payload)
    assert (header.request_api_key, header.request_api_version, header.correlation_id) == (18, 5, 77)
    assert header.client_id == "c"
    with pytest.raises(UnsupportedVersionError):
        decode_request(payload)


# -- zero copy -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [bytes, memoryview, bytearray])
def test_encode_response_keeps_records_by_reference(kind):
    blob = kind(bytes(range(256)) * 4096)  # 1 MiB of "records"
    small = b"r" * 10
    body = FetchResponse(
        responses=[FetchableTopicResponse(topic="t", partitions=[
            PartitionData(partition_index=0, records=blob),
            PartitionData(partition_index=1, records=small),
        ])],
    )
    for version in (4, 12, 15):
        chunks = encode_response(body, version, correlation_id=1)
        assert any(c is blob for c in chunks), [type(c) for c in chunks]
        assert sum(len(c) for c in chunks[1:]) == struct.unpack(">i", chunks[0])[0]
        header, back = decode_response(1, version, memoryview(joined(chunks))[4:])
        records = [p.records for p in back.responses[0].partitions]
        assert bytes(records[0]) == bytes(blob) and bytes(records[1]) == small
        # the small blob was copied into the header chunk, not kept apart
        assert not any(c is small for c in chunks)


def test_decoded_records_are_views_of_the_frame():
    blob = bytes(range(256)) * 64
    produce = ProduceRequest(acks=-1, timeout_ms=5, topic_data=[
        TopicProduceData(name="t", partition_data=[PartitionProduceData(index=0, records=blob)])])
    wire = bytearray(encode_request(produce, 9, 1, "c"))
    _, body = decode_request(memoryview(wire)[4:])
    records = body.topic_data[0].partition_data[0].records
    assert isinstance(records, memoryview) and records.obj is wire
    assert bytes(records) == blob


def test_encode_request_round_trip_all_headers():
    for key, version, client_id in ((7, 0, None), (3, 8, "c"), (3, 9, None), (18, 4, "x" * 1000)):
        cls = api_info(key).request
        wire = encode_request(cls(), version, 99, client_id)
        dec = FrameDecoder()
        dec.feed(wire)
        header, body = decode_request(dec.next_frame())
        assert header == RequestHeader(
            request_api_key=key, request_api_version=version, correlation_id=99,
            client_id="" if request_header_version(key, version) == 0 else client_id,
        )
        assert body == cls()


def test_response_header_v1_unknown_tags_survive():
    body = MetadataResponse(throttle_time_ms=0, brokers=[], cluster_id=None, controller_id=1, topics=[])
    payload = b"\x00\x00\x00\x05" + b"\x01\x04\x02hi" + body.encode(12)  # tag 4 = b"hi"
    header, back = decode_response(3, 12, memoryview(payload))
    assert header.correlation_id == 5 and header.unknown_tags == {4: b"hi"}
    assert back == body
    assert header.encode(1) == payload[:9]
