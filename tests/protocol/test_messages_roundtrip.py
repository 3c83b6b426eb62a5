"""Every message of every schema round-trips in every version it lists.

Values are drawn per version from the schema (as the generator reads it):
fields absent from a version keep their defaults, null appears only where
the version allows it, and flexible versions carry unknown tagged fields,
which must come back byte-identical.
"""

import importlib
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybroker.protocol.codegen import SCHEMA_DIR, Schema, within

SCHEMAS = [Schema(p) for p in sorted(SCHEMA_DIR.glob("*.json"))]
CASES = [(s, v) for s in SCHEMAS for v in range(s.valid[0], s.valid[1] + 1)]

INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
}


def scalar(t: str):
    if t in INT_RANGES:
        lo, hi = INT_RANGES[t]
        return st.integers(lo, hi)
    if t == "bool":
        return st.booleans()
    if t == "float64":
        return st.floats(allow_nan=False)
    if t == "string":
        return st.text(max_size=8)
    if t in ("bytes", "records"):
        return st.binary(max_size=16)
    if t == "uuid":
        return st.uuids(allow_nil=True)
    raise AssertionError(t)


def struct_strategy(module, schema, struct, version, flexible, depth=0):
    cls = getattr(module, struct.name)
    kwargs = {}
    for f in struct.fields:
        if f.mode(version) is None:
            continue
        if f.struct is not None:
            elem = struct_strategy(module, schema, f.struct, version, flexible, depth + 1)
        else:
            elem = scalar(f.elem)
        value = st.lists(elem, max_size=3 if depth < 2 else 1) if f.is_array else elem
        if within(f.nullable, version):
            value = st.none() | value
        kwargs[f.attr] = value
    known = {f.tag for f in struct.fields if f.tag is not None}
    if flexible:
        tags = st.integers(0, 40).filter(lambda t: t not in known)
        kwargs["unknown_tags"] = st.none() | st.dictionaries(tags, st.binary(max_size=6), min_size=1, max_size=2)
    return st.builds(cls, **kwargs)


@pytest.mark.parametrize(
    "schema,version", CASES, ids=[f"{s.name}-v{v}" for s, v in CASES]
)
def test_round_trip(schema, version):
    module = importlib.import_module(f"pybroker.protocol.messages.{schema.module}")
    cls = getattr(module, schema.name)
    strategy = struct_strategy(module, schema, schema.top, version, schema.flexible_at(version))

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(strategy)
    def check(msg):
        data = msg.encode(version)
        back = cls.decode(data, version)
        assert back == msg
        assert back.encode(version) == data

    check()


def test_every_api_key_and_version_is_covered():
    keys = {s.api_key for s in SCHEMAS if s.api_key is not None}
    assert len(keys) == 88
    versions = sum(1 for s, _ in CASES if s.type == "request")
    assert versions == sum(s.valid[1] - s.valid[0] + 1 for s in SCHEMAS if s.type == "request")
