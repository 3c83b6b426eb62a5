"""encode_response writes the response header itself (it runs for every
response); for every API key and version its bytes must be exactly what the
generated ResponseHeader encodes."""

from __future__ import annotations

import pytest

from pybroker.protocol.framing import decode_request_header, encode_request, encode_response
from pybroker.protocol.messages import APIS
from pybroker.protocol.messages.response_header import ResponseHeader
from pybroker.protocol.registry import api_info, request_header_version, response_header_version

CASES = [(key, v) for key, (*_, valid, _flex) in sorted(APIS.items()) for v in range(valid[0], valid[1] + 1)]


@pytest.mark.parametrize("key,version", CASES)
def test_response_header_bytes(key, version):
    body = api_info(key).response()
    chunks = encode_response(body, version, correlation_id=-123456, api_key=key)
    frame = b"".join(bytes(c) for c in chunks)
    header = ResponseHeader(correlation_id=-123456).encode(response_header_version(key, version))
    assert frame[4 : 4 + len(header)] == header
    assert frame[4 + len(header) :] == body.encode(version)


@pytest.mark.parametrize("key,version", CASES)
def test_request_header_versions(key, version):
    frame = encode_request(api_info(key).request(), version, 42, "c")[4:]
    header, pos = decode_request_header(frame)
    assert (header.request_api_key, header.request_api_version, header.correlation_id) == (key, version, 42)
    expected = 8 if request_header_version(key, version) == 0 else 8 + 2 + 1
    assert pos == expected + (1 if request_header_version(key, version) == 2 else 0)
