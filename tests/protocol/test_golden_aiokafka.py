"""Golden bytes: our codec against aiokafka 0.14's hand-written protocol.

aiokafka describes each API version as a ``Schema`` of (name, type) pairs
written by hand (``aiokafka/protocol/*.py``), with its own encoder and decoder
— a codec independent of Kafka's JSON schemas and of ours. Every
``RequestStruct`` and ``Response`` class it defines is found by its
API_KEY/API_VERSION, and for each:

* its fields are paired with ours for that version in wire order, checking
  that the wire types agree (int widths, compact vs classic strings, bytes
  and arrays, trailing tagged-field sections in flexible versions);
* the same values, built with aiokafka's class and with ours, must encode to
  the same bytes, and each side must decode the other's bytes back to them;
* a whole request frame as ``AIOKafkaConnection.send`` writes it (size,
  header v1 or v2 with client id, body) goes through FrameDecoder and
  decode_request; response frames cross both ways with the header that
  ``RequestStruct.parse_response_header`` expects (v1 only for flexible
  request structs).

Known aiokafka bugs are listed where they are handled: SCHEMA_FIXES (one
field corrected, the rest compared), NOT_COMPARED, _ak_classes (a wrong
API_VERSION), test_request_response_pairs (a wrong RESPONSE_TYPE) and
test_unknown_tags_reach_aiokafka (its TaggedFields encoder).

Values come from our schema with a seeded RNG (see _gen), so failures are
reproducible by test id.
"""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil
import random
import struct

import pytest

pytest.importorskip("aiokafka")

import aiokafka.protocol as ak_protocol  # noqa: E402
from aiokafka.protocol import types as T  # noqa: E402
from aiokafka.protocol.api import RequestStruct, Response, ResponseHeader_v0, ResponseHeader_v1  # noqa: E402

from pybroker.protocol import framing  # noqa: E402
from pybroker.protocol.codegen import SCHEMA_DIR, Schema, within  # noqa: E402
from pybroker.protocol.registry import api_info  # noqa: E402

OURS = {(s.api_key, s.type): s for s in (Schema(p) for p in sorted(SCHEMA_DIR.glob("*.json"))) if s.api_key is not None}


def _ak_classes():
    """{(api key, version, "request"|"response"): class} over all of aiokafka.protocol."""
    found: dict = {}
    for info in pkgutil.iter_modules(ak_protocol.__path__):
        mod = importlib.import_module(f"aiokafka.protocol.{info.name}")
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ != mod.__name__ or cls in (RequestStruct, Response):
                continue
            if issubclass(cls, RequestStruct):
                kind = "request"
            elif issubclass(cls, Response):
                kind = "response"
            else:
                continue
            if not isinstance(getattr(cls, "API_VERSION", None), int):
                continue
            key = (cls.API_KEY, cls.API_VERSION, kind)
            # aiokafka bug: ListGroupsRequest_v2 declares API_VERSION = 1 (so
            # it is sent as v1; harmless, the two bodies are both empty). Keep
            # the class whose name matches the version it declares.
            if key in found and not cls.__name__.endswith(f"_v{cls.API_VERSION}"):
                continue
            found[key] = cls
    return found


AK = _ak_classes()


# aiokafka classes whose SCHEMA is wrong for a field; the field's type is
# corrected in a subclass so that everything else is still compared.
SCHEMA_FIXES = {
    # ListOffsets v4 added CurrentLeaderEpoch as int32; aiokafka declares it
    # Int64 (offset.py). Unused: OffsetRequest's builder stops at v3.
    "OffsetRequest_v4": (("topics", "partitions", "current_leader_epoch"), T.Int32),
    "OffsetRequest_v5": (("topics", "partitions", "current_leader_epoch"), T.Int32),
}
# aiokafka classes with no comparable layout at all, tested on their own below.
NOT_COMPARED = {
    # Declared as v2 but with the v1 (non-flexible) schema, though Kafka made
    # v2 flexible; the builder never picks it (DescribeAclsRequestStruct ends
    # at v1). See test_describe_acls_v2_is_the_v1_layout.
    "DescribeAclsRequest_v2", "DescribeAclsResponse_v2",
}


def _cases(kind: str):
    keys = sorted(k for k in AK if k[2] == kind and AK[k].__name__ not in NOT_COMPARED)
    return [pytest.param(k[0], k[1], id=f"{AK[k].__name__}-key{k[0]}") for k in keys]


REQUEST_CASES = _cases("request")
RESPONSE_CASES = _cases("response")

# -- our fields vs aiokafka's, in wire order ------------------------------------------
#
# aiokafka groups fields differently from Kafka's schemas in places where the
# bytes are the same: MetadataRequest's topics are an array of strings, not
# of one-field structs; CreatePartitionsRequest v0/v1 nests Count and
# Assignments in a "new_partitions" struct. So both sides are compared in a
# canonical form: non-array structs are spliced into their parent, and an
# array element with a single value is that value.

TAGS = object()  # the tagged-field section at the end of a flexible struct

AK_SCALARS = {
    T.Int8: "int8", T.Int16: "int16", T.Int32: "int32", T.Int64: "int64", T.UInt32: "uint32",
    T.Float64: "float64", T.Boolean: "bool", T.Bytes: "bytes", T.CompactBytes: "cbytes", T.TaggedFields: "tags",
}


def _slots(struct, version: int, flexible: bool):
    """Our wire slots for ``struct`` in ``version``: its regular fields in order,
    then the tagged-field section when flexible."""
    slots = [f for f in struct.fields if f.mode(version) == "regular"]
    if flexible:
        slots.append(TAGS)
    return slots


def _single(items: list):
    return items[0] if len(items) == 1 else items


def _scalar_sig(t: str, flexible: bool) -> str:
    if t == "string":
        return "cstring" if flexible else "string"
    if t in ("bytes", "records"):
        return "cbytes" if flexible else "bytes"
    return t


def our_sig(struct, version, flexible) -> list:
    out = []
    for f in _slots(struct, version, flexible):
        if f is TAGS:
            out.append("tags")
        elif f.is_array:
            elem = our_sig(f.struct, version, flexible) if f.struct else [_scalar_sig(f.elem, flexible)]
            out.append(("carray" if flexible else "array", _single(elem)))
        elif f.struct is not None:
            assert not within(f.nullable, version), f.name  # a null struct cannot be spliced
            out.extend(our_sig(f.struct, version, flexible))
        else:
            out.append(_scalar_sig(f.type, flexible))
    return out


def _ak_type_sig(t):
    if isinstance(t, T.Schema):
        return ak_sig(t)
    if isinstance(t, T.Array):
        elem = ak_sig(t.array_of) if isinstance(t.array_of, T.Schema) else _ak_type_sig(t.array_of)
        return [("carray" if isinstance(t, T.CompactArray) else "array", _single(elem))]
    if isinstance(t, T.String):
        return ["cstring" if isinstance(t, T.CompactString) else "string"]
    return [AK_SCALARS[t]]


def ak_sig(schema) -> list:
    out = []
    for t in schema.fields:
        sig = _ak_type_sig(t)
        out.extend(sig) if isinstance(t, T.Schema) else out.append(sig[0])
    return out


def our_canon(struct, version, flexible, tree) -> list:
    out = []
    for f, value in zip(_slots(struct, version, flexible), tree):
        if f is not TAGS and f.struct is not None and value is not None:
            if f.is_array:
                out.append([_single(our_canon(f.struct, version, flexible, e)) for e in value])
            else:
                out.extend(our_canon(f.struct, version, flexible, value))
        else:
            out.append(value)
    return out


def ak_canon(schema, values) -> list:
    out = []
    for t, value in zip(schema.fields, values):
        if isinstance(t, T.Schema):
            out.extend(ak_canon(t, value))
        elif isinstance(t, T.Array) and isinstance(t.array_of, T.Schema) and value is not None:
            out.append([_single(ak_canon(t.array_of, e)) for e in value])
        else:
            out.append(value)
    return out


def _width(schema) -> int:
    return sum(_width(t) if isinstance(t, T.Schema) else 1 for t in schema.fields)


def ak_values(schema, canon) -> list:
    """Values in aiokafka's shape (tuples for its structs) from a canonical list."""
    it = iter(canon)
    out = _ak_take(schema, it)
    assert next(it, StopIteration) is StopIteration
    return out


def _ak_take(schema, it) -> list:
    out = []
    for t in schema.fields:
        if isinstance(t, T.Schema):
            out.append(tuple(_ak_take(t, it)))
            continue
        value = next(it)
        if isinstance(t, T.Array) and isinstance(t.array_of, T.Schema) and value is not None:
            one = _width(t.array_of) == 1
            value = [tuple(ak_values(t.array_of, [e] if one else e)) for e in value]
        out.append(value)
    return out


def _replace(schema, path, new):
    pairs = []
    for name, t in zip(schema.names, schema.fields):
        if name == path[0]:
            if len(path) == 1:
                t = new
            elif isinstance(t, T.Array):
                t = type(t)(_replace(t.array_of, path[1:], new))
            else:
                t = _replace(t, path[1:], new)
        pairs.append((name, t))
    return T.Schema(*pairs)


def _ak_class(api_key, version, kind):
    cls = AK[(api_key, version, kind)]
    fix = SCHEMA_FIXES.get(cls.__name__)
    if fix:
        cls = type(cls.__name__, (cls,), {"SCHEMA": _replace(cls.SCHEMA, *fix)})
    return cls


# -- values --------------------------------------------------------------------------

INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
STRINGS = ["", "topic-a", "t\u00f3pico-\u00fc-\u65e5\u672c", "group.1", "y" * 150]


def _scalar(rng, t):
    if t in INT_RANGES:
        lo, hi = INT_RANGES[t]
        return rng.choice([lo, hi, -1, 0, 1, rng.randint(lo, hi), rng.randint(lo, hi)])
    if t == "bool":
        return rng.random() < 0.5
    if t == "float64":
        return rng.choice([0.0, -2.5, 1e300, rng.random()])
    if t == "string":
        return rng.choice(STRINGS + [f"s{rng.randint(0, 999999)}"])
    if t in ("bytes", "records"):
        return bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 3, 40, 200])))
    raise AssertionError(t)


def _gen(rng, struct, version, flexible, depth=0, tags=False):
    """A positional tree: one value per slot; arrays are lists (of lists for
    structs), a non-array struct is a tuple, the tagged section a dict."""
    out = []
    for slot in _slots(struct, version, flexible):
        if slot is TAGS:
            # unknown tagged fields, as another client or a newer broker might send
            out.append({3: b"\x01\x02", 40: b""} if tags and rng.random() < 0.5 else {})
            continue
        f = slot
        if within(f.nullable, version) and rng.random() < 0.3:
            out.append(None)
        elif f.is_array:
            n = rng.choice([0, 1, 2, 3]) if depth < 3 else rng.choice([0, 1])
            if f.struct is not None:
                out.append([_gen(rng, f.struct, version, flexible, depth + 1, tags) for _ in range(n)])
            else:
                out.append([_scalar(rng, f.elem) for _ in range(n)])
        elif f.struct is not None:
            out.append(tuple(_gen(rng, f.struct, version, flexible, depth + 1, tags)))
        else:
            out.append(_scalar(rng, f.type))
    return out


def _build_ours(module, struct, tree, version, flexible):
    kwargs = {}
    for slot, value in zip(_slots(struct, version, flexible), tree):
        if slot is TAGS:
            kwargs["unknown_tags"] = dict(value) or None
        elif value is not None and slot.struct is not None:
            if slot.is_array:
                kwargs[slot.attr] = [_build_ours(module, slot.struct, v, version, flexible) for v in value]
            else:
                kwargs[slot.attr] = _build_ours(module, slot.struct, value, version, flexible)
        else:
            kwargs[slot.attr] = value
    return getattr(module, struct.name)(**kwargs)


def _tree_of_ours(struct, obj, version, flexible):
    out = []
    for slot in _slots(struct, version, flexible):
        if slot is TAGS:
            out.append(dict(obj.unknown_tags or {}))
            continue
        value = getattr(obj, slot.attr)
        if value is not None and slot.struct is not None:
            if slot.is_array:
                value = [_tree_of_ours(slot.struct, v, version, flexible) for v in value]
            else:
                value = tuple(_tree_of_ours(slot.struct, value, version, flexible))
        elif isinstance(value, memoryview):
            value = bytes(value)
        out.append(value)
    return out


def _decoded_ak(cls, obj) -> list:
    return ak_canon(cls.SCHEMA, [obj.get_item(n) for n in cls.SCHEMA.names])


def _setup(api_key, version, kind):
    cls = _ak_class(api_key, version, kind)
    schema = OURS[(api_key, kind)]
    assert schema.valid[0] <= version <= schema.valid[1]
    flexible = schema.flexible_at(version)
    if kind == "request":
        # aiokafka chooses the request header from FLEXIBLE_VERSION alone
        assert cls.FLEXIBLE_VERSION == flexible
    assert ak_sig(cls.SCHEMA) == our_sig(schema.top, version, flexible), cls.__name__
    module = importlib.import_module(f"pybroker.protocol.messages.{schema.module}")
    return cls, schema, module, flexible


def _samples(api_key, version, kind, tags=False, seeds=range(4)):
    cls, schema, module, flexible = _setup(api_key, version, kind)
    for seed in seeds:
        rng = random.Random(f"aiokafka/{api_key}/{version}/{kind}/{seed}/{tags}")
        tree = _gen(rng, schema.top, version, flexible, tags=tags)
        canon = our_canon(schema.top, version, flexible, tree)
        yield cls, schema, module, flexible, tree, canon


def _roundtrip(api_key, version, kind):
    for cls, schema, module, flexible, tree, canon in _samples(api_key, version, kind):
        ours = _build_ours(module, schema.top, tree, version, flexible)
        theirs = cls(*ak_values(cls.SCHEMA, canon))
        ak_bytes = theirs.encode()
        our_bytes = ours.encode(version)
        top = getattr(module, schema.name)
        assert _tree_of_ours(schema.top, top.decode(ak_bytes, version), version, flexible) == tree
        assert _decoded_ak(cls, cls.decode(our_bytes)) == canon
        assert our_bytes == ak_bytes


@pytest.mark.parametrize("api_key,version", REQUEST_CASES)
def test_request_body(api_key, version):
    _roundtrip(api_key, version, "request")


@pytest.mark.parametrize("api_key,version", RESPONSE_CASES)
def test_response_body(api_key, version):
    _roundtrip(api_key, version, "response")


def _flexible_cases(cases, kind):
    return [p for p in cases if OURS[(p.values[0], kind)].flexible_at(p.values[1])]


@pytest.mark.parametrize("api_key,version,kind", [
    pytest.param(*p.values, kind, id=f"{p.id}-{kind}")
    for kind, cases in (("request", REQUEST_CASES), ("response", RESPONSE_CASES))
    for p in _flexible_cases(cases, kind)
])
def test_unknown_tags_reach_aiokafka(api_key, version, kind):
    """Unknown tagged fields we keep and re-encode are read by aiokafka's
    TaggedFields decoder as the same {tag: bytes}. (Not the other way: aiokafka's
    TaggedFields.encode writes no value sizes and refuses tag 0, a bug that
    only an empty section escapes.)"""
    for cls, schema, module, flexible, tree, canon in _samples(api_key, version, kind, tags=True, seeds=range(6)):
        ours = _build_ours(module, schema.top, tree, version, flexible)
        assert _decoded_ak(cls, cls.decode(ours.encode(version))) == canon


def _split(wire: bytes):
    dec = framing.FrameDecoder()
    dec.feed(wire)
    frame = dec.next_frame()
    assert frame is not None and dec.buffered == 0
    return frame


@pytest.mark.parametrize("api_key,version", REQUEST_CASES)
def test_request_frame(api_key, version):
    """The frame AIOKafkaConnection.send writes: size + header + body."""
    for i, (cls, schema, module, flexible, tree, canon) in enumerate(_samples(api_key, version, "request")):
        req = cls(*ak_values(cls.SCHEMA, canon))
        client_id = ["aiokafka-0.14.0", "", "cli\u00e9nt-\u00fc", "x" * 300][i % 4]
        header = req.build_request_header(correlation_id=1000 + i, client_id=client_id)
        message = header.encode() + req.encode()
        wire = struct.pack(">i", len(message)) + message
        hdr, body = framing.decode_request(_split(wire))
        assert (hdr.request_api_key, hdr.request_api_version) == (api_key, version)
        assert hdr.correlation_id == 1000 + i
        assert hdr.client_id == client_id
        assert hdr.unknown_tags is None
        assert _tree_of_ours(schema.top, body, version, flexible) == tree
        ours = _build_ours(module, schema.top, tree, version, flexible)
        assert framing.encode_request(ours, version, 1000 + i, client_id) == wire


@pytest.mark.parametrize("api_key,version", RESPONSE_CASES)
def test_response_frame(api_key, version):
    """Our response frame read the way AIOKafkaConnection._handle_frame reads it
    (response header v1 when the request struct is FLEXIBLE_VERSION, else v0),
    and an aiokafka-encoded response frame read by our decode_response."""
    flexible_header = api_key != 18 and OURS[(api_key, "request")].flexible_at(version)
    if (api_key, version, "request") in AK:
        req_cls = AK[(api_key, version, "request")]
        assert req_cls.FLEXIBLE_VERSION == flexible_header
    for i, (cls, schema, module, flexible, tree, canon) in enumerate(_samples(api_key, version, "response")):
        ours = _build_ours(module, schema.top, tree, version, flexible)
        wire = b"".join(bytes(c) for c in framing.encode_response(ours, version, correlation_id=-7 - i))
        (size,) = struct.unpack_from(">i", wire)
        assert size == len(wire) - 4
        buf = io.BytesIO(wire[4:])
        header_cls = ResponseHeader_v1 if flexible_header else ResponseHeader_v0
        hdr = header_cls.decode(buf)
        assert hdr.correlation_id == -7 - i
        if flexible_header:
            assert hdr.tags == {}
        assert _decoded_ak(cls, cls.decode(buf)) == canon
        assert buf.read() == b""

        theirs = cls(*ak_values(cls.SCHEMA, canon))
        header = header_cls(-7 - i, {}) if flexible_header else header_cls(-7 - i)
        message = header.encode() + theirs.encode()
        assert struct.pack(">i", len(message)) + message == wire
        h, body = framing.decode_response(api_key, version, _split(wire))
        assert h.correlation_id == -7 - i
        assert _tree_of_ours(schema.top, body, version, flexible) == tree


def test_request_response_pairs():
    """Each aiokafka request struct names the response class it is read with;
    where that is another version's class, the layouts must still agree,
    except for one aiokafka bug."""
    for (key, version, kind), req_cls in AK.items():
        if kind != "request" or req_cls.__name__ in NOT_COMPARED:
            continue
        resp_cls = req_cls.RESPONSE_TYPE
        if resp_cls.API_VERSION == version:
            continue
        schema = OURS[(key, "response")]
        same = ak_sig(resp_cls.SCHEMA) == our_sig(schema.top, version, schema.flexible_at(version))
        if req_cls.__name__ == "DescribeGroupsRequest_v3":
            # aiokafka bug: v3 responses are read with the v2 class, which
            # lacks each group's AuthorizedOperations (int32 after Members),
            # so with more than one group aiokafka misreads the response.
            assert resp_cls.API_VERSION == 2 and not same
        else:
            # ApiVersionRequest_v2 -> ApiVersionResponse_v1: same layout
            assert same, (req_cls.__name__, resp_cls.__name__)


def test_describe_acls_v2_is_the_v1_layout():
    """aiokafka's DescribeAcls*_v2 classes reuse the v1 schema (not flexible).
    Kafka's v2 is flexible; what those classes encode is our v1 body."""
    for kind in ("request", "response"):
        cls = AK[(29, 2, kind)]
        assert cls.SCHEMA is AK[(29, 1, kind)].SCHEMA
        schema = OURS[(29, kind)]
        assert schema.flexible_at(2) and not schema.flexible_at(1)
        assert ak_sig(cls.SCHEMA) == our_sig(schema.top, 1, False)
    assert AK[(29, 2, "request")].FLEXIBLE_VERSION is False


# -- spelled out ------------------------------------------------------------------------


def test_coverage():
    """The APIs aiokafka speaks, and at least the versions its clients pick."""
    keys = {p.values[0] for p in REQUEST_CASES}
    for key in (0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 24, 25, 26, 28,
                29, 30, 31, 32, 33, 36, 37, 42, 45, 46, 48):
        assert key in keys, key
    assert len(REQUEST_CASES) >= 100
    assert {p.values for p in REQUEST_CASES} <= {p.values for p in RESPONSE_CASES} | {(16, 2)}


def test_api_versions_v0_bootstrap():
    """aiokafka's first request on every connection: ApiVersions v0 with header v1."""
    from aiokafka.protocol.admin import ApiVersionRequest, ApiVersionResponse_v0

    req = ApiVersionRequest().prepare({})
    header = req.build_request_header(correlation_id=0, client_id="aiokafka-0.14.0")
    message = header.encode() + req.encode()
    frame = _split(struct.pack(">i", len(message)) + message)
    assert bytes(frame) == b"\x00\x12\x00\x00\x00\x00\x00\x00\x00\x0faiokafka-0.14.0"
    hdr, body = framing.decode_request(frame)
    assert (hdr.request_api_key, hdr.request_api_version, hdr.client_id) == (18, 0, "aiokafka-0.14.0")

    resp = api_info(18).response(error_code=0)
    resp.api_keys = [_api_version(0, 0, 11), _api_version(18, 0, 4)]
    wire = b"".join(bytes(c) for c in framing.encode_response(resp, 0, correlation_id=0))
    buf = io.BytesIO(wire[4:])
    assert req.parse_response_header(buf).correlation_id == 0
    back = ApiVersionResponse_v0.decode(buf)
    assert back.error_code == 0
    assert back.api_versions == [(0, 0, 11), (18, 0, 4)]


def _api_version(key, lo, hi):
    from pybroker.protocol.messages.api_versions_response import ApiVersion

    return ApiVersion(api_key=key, min_version=lo, max_version=hi)


def test_produce_v8_records_spelled_out():
    from aiokafka.protocol.produce import ProduceRequest_v8

    batch = bytes(range(256)) * 20  # bigger than one chunk: kept by reference on our side
    req = ProduceRequest_v8("txn-1", -1, 1500, [("orders", [(0, batch), (3, b"")]), ("\u00fc", [])])
    data = req.encode()
    body = api_info(0).request.decode(data, 8)
    assert (body.transactional_id, body.acks, body.timeout_ms) == ("txn-1", -1, 1500)
    assert [t.name for t in body.topic_data] == ["orders", "\u00fc"]
    p0, p3 = body.topic_data[0].partition_data
    assert (p0.index, bytes(p0.records)) == (0, batch)
    assert (p3.index, bytes(p3.records)) == (3, b"")
    assert body.encode(8) == data
