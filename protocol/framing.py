"""Size-prefixed frames and the request/response envelopes around bodies.

``FrameDecoder`` is the sans-IO half of a connection: feed it whatever the
socket produced, take whole frames out. The declared size is checked against
the configured maximum as soon as the 4-byte prefix is in, before any buffer
grows for it, as Kafka does with ``socket.request.max.bytes``.
"""

from __future__ import annotations

from typing import NamedTuple

from .errors import DecodeError, FrameTooLargeError
from .message import Message
from .messages.request_header import RequestHeader
from .messages.response_header import ResponseHeader
from .primitives import INT16, INT32, Writer
from .registry import api_info, request_header_version, response_header_version

DEFAULT_MAX_FRAME = 100 * 1024 * 1024  # Kafka's socket.request.max.bytes default


class FrameDecoder:
    """Splits a byte stream into frames (the bytes after each size prefix)."""

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME):
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._start = 0  # consumed prefix of _buf, dropped lazily to avoid O(n^2) shifting

    def feed(self, data) -> None:
        if self._start and self._start == len(self._buf):
            self._buf.clear()
            self._start = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._start

    def next_frame(self) -> memoryview | None:
        """The next whole frame, or None until more bytes arrive.

        The frame is a writable view of a private copy, valid after further feeds.
        """
        avail = len(self._buf) - self._start
        if avail < 4:
            return None
        (size,) = INT32.unpack_from(self._buf, self._start)
        if size < 0:
            raise DecodeError(f"negative frame size {size}")
        if size > self.max_frame_size:
            raise FrameTooLargeError(size, self.max_frame_size)
        if avail < 4 + size:
            return None
        begin = self._start + 4
        frame = self._buf[begin : begin + size]  # a bytearray: the log patches offsets in place
        self._start = begin + size
        if self._start > 65536 and self._start * 2 > len(self._buf):
            del self._buf[: self._start]
            self._start = 0
        return memoryview(frame)


class RequestFrame(NamedTuple):
    header: RequestHeader
    body_offset: int  # where the body starts in the frame


def peek_request(frame) -> tuple[int, int, int]:
    """(api key, api version, correlation id) of any request frame, readable
    even when the key or version is unknown, so the broker can still answer."""
    if len(frame) < 8:
        raise DecodeError(f"request header needs 8 bytes, frame has {len(frame)}")
    api_key, api_version = INT16.unpack_from(frame, 0)[0], INT16.unpack_from(frame, 2)[0]
    (correlation_id,) = INT32.unpack_from(frame, 4)
    return api_key, api_version, correlation_id


def decode_request_header(frame) -> RequestFrame:
    """The request header of a frame for a known API key (any version)."""
    api_key, api_version, _ = peek_request(frame)
    header, pos = RequestHeader.decode_from(frame, 0, request_header_version(api_key, api_version))
    return RequestFrame(header, pos)


def decode_request(frame) -> tuple[RequestHeader, Message]:
    """Header and body of a request; UnsupportedVersionError for a key or
    version without a schema, DecodeError for bytes that do not fit it."""
    header, pos = decode_request_header(frame)
    info = api_info(header.request_api_key)
    body = info.request.decode(memoryview(frame)[pos:], header.request_api_version)
    return header, body


def encode_request(body: Message, version: int, correlation_id: int, client_id: str | None = None) -> bytes:
    """A whole request frame, size prefix included."""
    api_key = body.API_KEY
    header = RequestHeader(
        request_api_key=api_key, request_api_version=version, correlation_id=correlation_id, client_id=client_id
    )
    w = Writer()
    w.buf += b"\0\0\0\0"
    header.write(w, request_header_version(api_key, version))
    body.write(w, version)
    data = bytearray(w.getvalue())
    INT32.pack_into(data, 0, len(data) - 4)
    return bytes(data)


def encode_response(body: Message, version: int, correlation_id: int, api_key: int | None = None) -> list:
    """A whole response frame as a list of buffers (size prefix first);
    record data inside the body is passed through by reference."""
    key = body.API_KEY if api_key is None else api_key
    w = Writer()
    ResponseHeader(correlation_id=correlation_id).write(w, response_header_version(key, version))
    body.write(w, version)
    chunks = w.chunks()
    return [INT32.pack(sum(len(c) for c in chunks)), *chunks]


def decode_response(api_key: int, version: int, frame) -> tuple[ResponseHeader, Message]:
    header, pos = ResponseHeader.decode_from(frame, 0, response_header_version(api_key, version))
    body = api_info(api_key).response.decode(memoryview(frame)[pos:], version)
    return header, body
