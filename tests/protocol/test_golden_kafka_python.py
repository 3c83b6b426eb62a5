"""Golden bytes: our codec against kafka-python 3.x's protocol layer.

kafka-python 3.x carries its own copy of Kafka's JSON schemas (a newer
snapshot than ours) and its own encoder/decoder (``kafka/protocol/schemas``,
code generated at run time). For every request and response class it
defines and every version both sides know, the same values are built once
with kafka-python's classes and once with ours, and:

* the two encodings must be byte-identical;
* our decoder must read kafka-python's bytes back to those values;
* kafka-python's decoder must read our bytes back to those values;
* a whole request frame (size, header v1/v2 with client id, body) written by
  kafka-python must come out of FrameDecoder + decode_request intact, and a
  response frame must cross in both directions with the right header
  version (v0 for ApiVersions even when the body is flexible).

Values are drawn from our schema per version with a seeded RNG, so every
case is reproducible: several topics and partitions, null and non-null
strings, negative and extreme integers, non-ASCII strings, strings longer
than 127 bytes (two-byte compact lengths), known tagged fields set to
non-default values.

Values are kept as plain trees keyed by the JSON field name; fields are paired
with kafka-python's per version by position, after checking that both schemas
agree on each field's name and type (see KNOWN_RENAMES for the exceptions).
"""

from __future__ import annotations

import importlib
import inspect
import random
import uuid

import pytest

pytest.importorskip("kafka")

import kafka.protocol.admin  # noqa: E402
import kafka.protocol.consumer  # noqa: E402
import kafka.protocol.metadata  # noqa: E402
import kafka.protocol.producer  # noqa: E402
import kafka.protocol.sasl  # noqa: E402
from kafka.protocol.api_message import ApiMessage  # noqa: E402
from kafka.protocol.schemas.fields.base import BaseField  # noqa: E402
from kafka.protocol.schemas.fields.codecs import BitField  # noqa: E402

from pybroker.protocol import framing  # noqa: E402
from pybroker.protocol.codegen import SCHEMA_DIR, Schema, within  # noqa: E402
from pybroker.protocol.registry import api_info  # noqa: E402

# -- the two sides -------------------------------------------------------------


def _kp_classes() -> dict[str, type]:
    found = {}
    for mod in (kafka.protocol.admin, kafka.protocol.consumer, kafka.protocol.metadata,
                kafka.protocol.producer, kafka.protocol.sasl):
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, ApiMessage) and cls is not ApiMessage and getattr(cls, "_json", None):
                found[cls.__name__] = cls
    return found


KP = _kp_classes()
OURS = {s.name: s for s in (Schema(p) for p in sorted(SCHEMA_DIR.glob("*.json"))) if s.api_key is not None}


def _versions(name: str) -> range:
    """Versions both kafka-python and we know.

    kafka-python's schemas are newer than ours and declare higher minimums
    (Produce 3-13, Fetch 4-18, ...), but it lowers every minimum to 0 and
    keeps the old fields, because it still talks to old brokers; so those
    versions are compared too (``_pairs`` checks the layouts agree)."""
    hi = BaseField.parse_versions(KP[name]._json["validVersions"])[1]
    ours = OURS[name].valid
    return range(max(KP[name].min_version, ours[0]), min(hi, ours[1]) + 1)


def _cases(kind: str) -> list:
    names = sorted((n for n in KP if n in OURS and OURS[n].type == kind), key=lambda n: (OURS[n].api_key, n))
    return [pytest.param(n, v, id=f"{n}-v{v}") for n in names for v in _versions(n)]


REQUEST_CASES = _cases("request")
RESPONSE_CASES = _cases("response")

# kafka-python patches some schemas (``json_patch``): the AuthorizedOperations
# int32 fields of MetadataResponse, DescribeClusterResponse and
# DescribeGroupsResponse become a "bitfield" (a set of bit positions, None for
# the INT32_MIN "not requested" marker) and, in the first two, are renamed.
# Same wire format, different Python value; converted below, not skipped.
KNOWN_RENAMES = {
    ("ClusterAuthorizedOperations", "authorized_operations"),
    ("TopicAuthorizedOperations", "authorized_operations"),
}


def _our_module(schema: Schema):
    return importlib.import_module(f"pybroker.protocol.messages.{schema.module}")


def _pairs(struct, kfield, version):
    """(our field, kafka-python field) for the fields present in ``version``."""
    ours = [f for f in struct.fields if f.mode(version) is not None]
    theirs = [f for f in kfield.fields.values() if f.for_version_q(version)]
    assert len(ours) == len(theirs), (struct.name, version, [f.name for f in ours], [f._name for f in theirs])
    for f, k in zip(ours, theirs):
        assert f.name == k._name or (f.name, k._name) in KNOWN_RENAMES, (struct.name, version, f.name, k._name)
        assert (f.mode(version) == "tagged") == k.tagged_field_q(version), (struct.name, f.name)
        if f.mode(version) == "tagged":
            assert f.tag == k.tag
        if k._type_str == "bitfield":
            assert f.type == "int32", f.name
        else:
            assert f.type == k._type_str, (struct.name, f.name, f.type, k._type_str)
        assert within(f.nullable, version) == k.nullable_for_version_q(version), (struct.name, f.name)
    return list(zip(ours, theirs))


# -- value generation (from our schema) ------------------------------------------

INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
STRINGS = ["", "topic-a", "t\u00f3pico-\u00fc-\u65e5\u672c", "consumer-group.1", "x" * 200]


def _scalar(rng: random.Random, t: str):
    if t in INT_RANGES:
        lo, hi = INT_RANGES[t]
        return rng.choice([lo, hi, -1, 0, 1, rng.randint(lo, hi), rng.randint(lo, hi)])
    if t == "bool":
        return rng.random() < 0.5
    if t == "float64":
        return rng.choice([0.0, -1.5, 3.25e10, rng.random()])
    if t == "string":
        return rng.choice(STRINGS + ["s%d" % rng.randint(0, 10**6)])
    if t in ("bytes", "records"):
        return bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 7, 40, 300])))
    if t == "uuid":
        return uuid.UUID(int=rng.getrandbits(128))
    raise AssertionError(t)


def _field_value(rng, module, f, version, depth):
    nullable = within(f.nullable, version)
    if nullable and rng.random() < 0.3:
        return None
    if f.is_array:
        n = rng.choice([0, 1, 2, 2, 3]) if depth < 3 else rng.choice([0, 1])
        if f.struct is not None:
            return [gen_struct(rng, module, f.struct, version, depth + 1) for _ in range(n)]
        return [_scalar(rng, f.elem) for _ in range(n)]
    if f.struct is not None:
        return gen_struct(rng, module, f.struct, version, depth + 1)
    return _scalar(rng, f.type)


def gen_struct(rng, module, struct, version, depth=0, fixed=None) -> dict:
    """A value tree {json name: value} for ``struct`` in ``version``.

    Tagged fields are left out (meaning: default) or set to a non-default
    value; ``fixed`` pins fields of the top level."""
    cls = getattr(module, struct.name)
    out = {}
    for f in struct.fields:
        mode = f.mode(version)
        if mode is None:
            continue
        if fixed and f.name in fixed:
            out[f.name] = fixed[f.name]
            continue
        value = _field_value(rng, module, f, version, depth)
        if mode == "tagged":
            if rng.random() < 0.3 or _to_ours(module, f, value, version) == getattr(cls(), f.attr):
                continue
        out[f.name] = value
    return out


# ApiVersionsResponse with a non-zero error code is read by kafka-python as a
# v0 body whatever the version (KIP-511 fallback), so its cases keep error 0;
# the fallback itself is tested in test_api_versions_error_falls_back_to_v0.
FIXED = {"ApiVersionsResponse": {"ErrorCode": 0}}


# -- trees <-> our messages -------------------------------------------------------


def _to_ours(module, f, value, version):
    if value is None:
        return None
    if f.struct is not None:
        if f.is_array:
            return [build_ours(module, f.struct, v, version) for v in value]
        return build_ours(module, f.struct, value, version)
    return value


def build_ours(module, struct, tree, version):
    kwargs = {}
    for f in struct.fields:
        if f.name in tree:
            kwargs[f.attr] = _to_ours(module, f, tree[f.name], version)
    return getattr(module, struct.name)(**kwargs)


def _plain(value):
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def tree_of_ours(module, struct, obj, version) -> dict:
    default = getattr(module, struct.name)()
    out = {}
    for f in struct.fields:
        mode = f.mode(version)
        if mode is None:
            continue
        value = getattr(obj, f.attr)
        if mode == "tagged" and value == getattr(default, f.attr):
            continue
        if value is not None and f.struct is not None:
            if f.is_array:
                value = [tree_of_ours(module, f.struct, v, version) for v in value]
            else:
                value = tree_of_ours(module, f.struct, value, version)
        out[f.name] = _plain(value)
    assert obj.unknown_tags is None, obj.unknown_tags
    return out


# -- trees <-> kafka-python messages ----------------------------------------------


def _bits_from_int(value: int):
    bits = BitField.from_32_bit_field(value & 0xFFFFFFFF)
    return None if bits == {31} else bits


def _int_from_bits(bits) -> int:
    value = BitField.to_32_bit_field({31} if bits is None else bits)
    return value - (1 << 32) if value >= 1 << 31 else value


def _to_kp(f, k, value, version):
    if value is None:
        return None
    if f.struct is not None:
        if f.is_array:
            return [build_kp(f.struct, k.data_class, k, v, version) for v in value]
        return build_kp(f.struct, k.data_class, k, value, version)
    if k._type_str == "bitfield":
        return _bits_from_int(value)
    return value


def build_kp(struct, data_class, kfield, tree, version, top=False):
    kwargs = {}
    for f, k in _pairs(struct, kfield, version):
        if f.name in tree:
            kwargs[k.name] = _to_kp(f, k, tree[f.name], version)
    if top:
        return data_class(version=version, **kwargs)
    return data_class(**kwargs)


def tree_of_kp(struct, kfield, obj, version) -> dict:
    out = {}
    for f, k in _pairs(struct, kfield, version):
        value = getattr(obj, k.name)
        if f.mode(version) == "tagged" and value == k.default:
            continue
        if value is not None and f.struct is not None:
            if f.is_array:
                value = [tree_of_kp(f.struct, k, v, version) for v in value]
            else:
                value = tree_of_kp(f.struct, k, value, version)
        elif k._type_str == "bitfield":
            value = _int_from_bits(value)
        elif f.type == "uuid" and value is None:
            value = uuid.UUID(int=0)  # kafka-python reads the all-zero uuid as None
        out[f.name] = _plain(value)
    return out


# -- the checks ------------------------------------------------------------------

SEEDS = range(4)


def _samples(name: str, version: int):
    schema = OURS[name]
    module = _our_module(schema)
    for seed in SEEDS:
        rng = random.Random(f"{name}/{version}/{seed}")
        tree = gen_struct(rng, module, schema.top, version, fixed=FIXED.get(name))
        kp_msg = build_kp(schema.top, KP[name], KP[name]._struct, tree, version, top=True)
        ours = build_ours(module, schema.top, tree, version)
        yield schema, module, tree, kp_msg, ours


def _check_body(name: str, version: int) -> None:
    kcls = KP[name]
    for schema, module, tree, kp_msg, ours in _samples(name, version):
        kp_bytes = kp_msg.encode(version=version)
        our_bytes = ours.encode(version)
        # Ours reads theirs...
        decoded = schema_cls(schema).decode(kp_bytes, version)
        assert tree_of_ours(module, schema.top, decoded, version) == tree
        # ...they read ours...
        theirs = kcls.decode(our_bytes, version=version)
        assert tree_of_kp(schema.top, kcls._struct, theirs, version) == tree
        # ...and the bytes are the same.
        assert our_bytes == kp_bytes


def schema_cls(schema: Schema):
    return getattr(_our_module(schema), schema.name)


@pytest.mark.parametrize("name,version", REQUEST_CASES)
def test_request_body(name, version):
    _check_body(name, version)


@pytest.mark.parametrize("name,version", RESPONSE_CASES)
def test_response_body(name, version):
    _check_body(name, version)


def _split(frame_bytes: bytes) -> memoryview:
    dec = framing.FrameDecoder()
    dec.feed(frame_bytes)
    frame = dec.next_frame()
    assert frame is not None and dec.next_frame() is None and dec.buffered == 0
    return frame


@pytest.mark.parametrize("name,version", REQUEST_CASES)
def test_request_frame(name, version):
    """kafka-python's whole request (size, header v1/v2, body) through our framing."""
    for i, (schema, module, tree, kp_msg, ours) in enumerate(_samples(name, version)):
        client_id = ["kafka-python-3.0.12", "", "cli\u00e9nt", None][i % 4]
        kp_msg.with_header(correlation_id=0x7FFFFFF0 - i, client_id=client_id)
        wire = kp_msg.encode(version=version, header=True, framed=True)
        header, body = framing.decode_request(_split(wire))
        assert header.request_api_key == schema.api_key
        assert header.request_api_version == version
        assert header.correlation_id == 0x7FFFFFF0 - i
        assert header.client_id == client_id
        assert header.unknown_tags is None
        assert tree_of_ours(module, schema.top, body, version) == tree
        # and our encoder writes the same frame
        assert framing.encode_request(ours, version, 0x7FFFFFF0 - i, client_id) == wire


@pytest.mark.parametrize("name,version", RESPONSE_CASES)
def test_response_frame(name, version):
    """Responses framed by us are read by kafka-python and the other way round,
    with header v1 for flexible versions except for ApiVersions (always v0)."""
    kcls = KP[name]
    for i, (schema, module, tree, kp_msg, ours) in enumerate(_samples(name, version)):
        cid = -5 + i
        wire = b"".join(bytes(c) for c in framing.encode_response(ours, version, cid))
        theirs = kcls.decode(wire, version=version, header=True, framed=True)
        assert theirs.header.correlation_id == cid
        assert tree_of_kp(schema.top, kcls._struct, theirs, version) == tree

        kp_msg.with_header(correlation_id=cid)
        # No version= here: kafka-python's API_VERSION setter writes
        # request_api_version into whatever header is attached, which a
        # ResponseHeader lacks (AttributeError); the message already has it.
        kp_wire = kp_msg.encode(header=True, framed=True)
        assert kp_wire == wire
        header, body = framing.decode_response(schema.api_key, version, _split(kp_wire))
        assert header.correlation_id == cid
        assert tree_of_ours(module, schema.top, body, version) == tree


# -- hand-picked cases, spelled out ----------------------------------------------------


def test_coverage_of_client_apis():
    """Every API in CLIENTS.md §6 that kafka-python implements is compared,
    in both directions, over the whole range both sides share."""
    wanted = {
        "ApiVersions", "Metadata", "Produce", "Fetch", "ListOffsets", "FindCoordinator", "JoinGroup",
        "SyncGroup", "Heartbeat", "LeaveGroup", "OffsetCommit", "OffsetFetch", "CreateTopics", "DeleteTopics",
        "DescribeConfigs", "ListGroups", "DescribeGroups", "InitProducerId", "SaslHandshake", "SaslAuthenticate",
        "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn", "TxnOffsetCommit", "DeleteRecords",
        "CreatePartitions", "DeleteGroups", "AlterConfigs",
    }
    requests = {p.values[0] for p in REQUEST_CASES}
    responses = {p.values[0] for p in RESPONSE_CASES}
    for api in wanted:
        assert api + "Request" in requests and api + "Response" in responses, api
    assert len(REQUEST_CASES) >= 200 and len(RESPONSE_CASES) == len(REQUEST_CASES)


def test_api_versions_v4_as_kafka_python_sends_it():
    """kafka-python 3.x opens every connection with ApiVersions v4: flexible
    body, header v2 (tagged fields) with a classic int16-length client id."""
    from kafka.protocol.metadata import ApiVersionsRequest

    req = ApiVersionsRequest(version=4, client_software_name="kafka-python", client_software_version="3.0.12")
    req.with_header(correlation_id=1, client_id="kafka-python-3.0.12")
    wire = req.encode(header=True, framed=True)
    frame = _split(wire)
    # header v2: the client id keeps its int16 length even though the body is compact
    assert bytes(frame[:10]) == b"\x00\x12\x00\x04\x00\x00\x00\x01\x00\x13"
    header, body = framing.decode_request(frame)
    assert (header.request_api_key, header.request_api_version, header.correlation_id) == (18, 4, 1)
    assert header.client_id == "kafka-python-3.0.12"
    assert body.client_software_name == "kafka-python"
    assert body.client_software_version == "3.0.12"
    assert body.unknown_tags is None


def test_api_versions_response_v3_header_is_v0():
    from kafka.protocol.metadata import ApiVersionsResponse

    ours = api_info(18).response(
        error_code=0,
        api_keys=[_api_version(k, 0, v) for k, v in [(0, 11), (18, 4)]],
        throttle_time_ms=0,
    )
    chunks = framing.encode_response(ours, 3, correlation_id=77)
    wire = b"".join(bytes(c) for c in chunks)
    # size, correlation id, then straight into the body: no header tag byte
    assert wire[4:8] == b"\x00\x00\x00\x4d" and wire[8:10] == b"\x00\x00"
    theirs = ApiVersionsResponse.decode(wire, version=3, header=True, framed=True)
    assert theirs.header.correlation_id == 77
    assert [(a.api_key, a.min_version, a.max_version) for a in theirs.api_keys] == [(0, 0, 11), (18, 0, 4)]


def _api_version(key, lo, hi):
    from pybroker.protocol.messages.api_versions_response import ApiVersion

    return ApiVersion(api_key=key, min_version=lo, max_version=hi)


def test_api_versions_error_falls_back_to_v0():
    """A v0-format error body (what a broker sends for an unsupported
    ApiVersions version) is what kafka-python reads whatever version it sent."""
    from kafka.protocol.metadata import ApiVersionsResponse

    ours = api_info(18).response(error_code=35, api_keys=[_api_version(18, 0, 4)])
    wire = b"".join(bytes(c) for c in framing.encode_response(ours, 0, correlation_id=9))
    theirs = ApiVersionsResponse.decode(wire, version=4, header=True, framed=True)
    assert theirs.error_code == 35
    assert [(a.api_key, a.min_version, a.max_version) for a in theirs.api_keys] == [(18, 0, 4)]


def test_produce_v3_fields_spelled_out():
    from kafka.protocol.producer import ProduceRequest

    P = ProduceRequest
    req = P(
        version=3,
        transactional_id=None,
        acks=-1,
        timeout_ms=30000,
        topic_data=[
            P.TopicProduceData(name="a", partition_data=[
                P.TopicProduceData.PartitionProduceData(index=0, records=b"\x01\x02"),
                P.TopicProduceData.PartitionProduceData(index=7, records=None),
            ]),
            P.TopicProduceData(name="b\u00e9", partition_data=[]),
        ],
    )
    data = req.encode(version=3)
    body = api_info(0).request.decode(data, 3)
    assert body.transactional_id is None and body.acks == -1 and body.timeout_ms == 30000
    assert [t.name for t in body.topic_data] == ["a", "b\u00e9"]
    parts = body.topic_data[0].partition_data
    assert [(p.index, None if p.records is None else bytes(p.records)) for p in parts] == [(0, b"\x01\x02"), (7, None)]
    assert body.topic_data[1].partition_data == []
    assert body.encode(3) == data


def test_metadata_null_topics_means_all():
    from kafka.protocol.metadata import MetadataRequest

    for version in range(1, 13):
        req = MetadataRequest(version=version, topics=None, allow_auto_topic_creation=True)
        body = api_info(3).request.decode(req.encode(version=version), version)
        assert body.topics is None
    # v0 has no null: kafka-python sends an empty list for "all topics"
    body = api_info(3).request.decode(MetadataRequest(version=0, topics=None).encode(version=0), 0)
    assert body.topics == []


def test_fetch_response_with_a_large_records_blob():
    """A records blob above our chunk threshold travels as its own chunk;
    the joined frame is still byte for byte what kafka-python writes."""
    from kafka.protocol.consumer import FetchResponse

    from pybroker.protocol.messages.fetch_response import FetchableTopicResponse, PartitionData

    blob = bytes(range(256)) * 256  # 64 KiB
    for version in (4, 11, 12, 16):
        ours = api_info(1).response(
            throttle_time_ms=1, error_code=0, session_id=7 if version >= 7 else 0,
            responses=[FetchableTopicResponse(
                topic="t" if version < 13 else "",
                topic_id=uuid.UUID(int=0 if version < 13 else 5),
                partitions=[PartitionData(partition_index=2, high_watermark=10, last_stable_offset=9,
                                          log_start_offset=0 if version >= 5 else -1,
                                          aborted_transactions=[], records=blob)])],
        )
        chunks = framing.encode_response(ours, version, correlation_id=3)
        assert any(c is blob for c in chunks)
        wire = b"".join(bytes(c) for c in chunks)
        theirs = FetchResponse.decode(wire, version=version, header=True, framed=True)
        part = theirs.responses[0].partitions[0]
        assert bytes(part.records) == blob and part.high_watermark == 10
        theirs.with_header(correlation_id=3)
        assert theirs.encode(header=True, framed=True) == wire


def test_unknown_tags_reach_kafka_python():
    """Unknown tagged fields we keep are seen by kafka-python's decoder (as
    ``_<tag>`` entries of unknown_tags)."""
    from kafka.protocol.metadata import MetadataRequest

    from pybroker.protocol.messages.metadata_request import MetadataRequestTopic

    ours = api_info(3).request(topics=[MetadataRequestTopic(name="a", unknown_tags={9: b"\x05"})],
                               unknown_tags={3: b"xyz", 200: b""})
    theirs = MetadataRequest.decode(ours.encode(12), version=12)
    assert theirs.unknown_tags == {"_3": b"xyz", "_200": b""}
    assert theirs.topics[0].unknown_tags == {"_9": b"\x05"}
    assert theirs.topics[0].name == "a"
