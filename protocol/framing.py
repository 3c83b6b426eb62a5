"""Size-prefixed frames and the request/response envelopes around bodies.

``FrameDecoder`` is the sans-IO half of a connection: bytes go in, whole
frames come out. The declared size is checked against the configured maximum
as soon as the 4-byte prefix is in, before any buffer grows for it, as Kafka
does with ``socket.request.max.bytes``.

Bytes go in one of two ways. ``feed`` copies what it is given (tests, simple
clients). ``get_buffer`` / ``buffer_updated`` (asyncio's BufferedProtocol
names) let a connection receive straight into the decoder: small frames land
in a reused receive buffer and leave it as one copy each; a frame whose size
is known but whose bytes have not all arrived gets a bytearray of its own,
and the rest of it is received directly into that, so the bulk of a large
Produce is never copied between the socket and the disk.
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
RECEIVE_SIZE = 64 * 1024
# A frame's own buffer starts at most this large and grows with the bytes
# that arrive: a declared size alone (up to 100 MiB, or 2 GiB where the limit
# allows) reserves nothing the client has not sent.
FRAME_RESERVE = 1024 * 1024
# Smaller frames stay in the receive buffer until whole (many fit in one
# receive, and a copy of a few KiB costs less than another receive); larger
# ones get a buffer of their own.
OWN_BUFFER_FROM = 32 * 1024


class FrameBuffers:
    """Recycles the buffers of large frames once nothing refers to them.

    A fresh bytearray of some hundred KiB costs a zero fill and, since the
    allocator hands such blocks back to the kernel, a page fault per 4 KiB:
    about a tenth of the broker's time under a produce load. A decoder
    ``take``s a buffer to receive a frame into and ``give_back``s it when it
    hands the frame out; from then on the buffer is reused only once no view
    of it is left (the request's record batches, anything a handler kept):
    a bytearray with live views refuses to change size, which is the test.
    Buffers are sized in powers of two so frames of similar size share
    them; the pool keeps at most ``limit`` bytes of them.
    """

    def __init__(self, limit: int = 32 * 1024 * 1024):
        self.limit = limit
        self._kept: list[bytearray] = []
        self._kept_bytes = 0

    def take(self, size: int) -> bytearray:
        """A buffer of at least ``size`` bytes that nothing else refers to."""
        capacity = 1 << (size - 1).bit_length()
        for i, buf in enumerate(self._kept):
            if len(buf) == capacity and _unviewed(buf):
                del self._kept[i]
                self._kept_bytes -= capacity
                return buf
        return bytearray(capacity)

    def give_back(self, buf: bytearray) -> None:
        """``buf`` now backs a frame that was handed out."""
        if self._kept_bytes + len(buf) > self.limit:
            self._kept = [b for b in self._kept if not _unviewed(b)]
            self._kept_bytes = sum(map(len, self._kept))
            if self._kept_bytes + len(buf) > self.limit:
                return
        self._kept.append(buf)
        self._kept_bytes += len(buf)


def _unviewed(buf: bytearray) -> bool:
    """True if no view of ``buf`` is alive (it can change size)."""
    try:
        buf.append(0)
    except BufferError:
        return False
    del buf[-1]
    return True


class FrameDecoder:
    """Splits a byte stream into frames (the bytes after each size prefix).

    Every frame returned is a writable view of a buffer of its own: the log
    patches offsets in place, and a handler may keep it for as long as it
    likes while the decoder goes on. With ``buffers`` large frames come from
    that pool instead of fresh allocations.
    """

    def __init__(
        self,
        max_frame_size: int = DEFAULT_MAX_FRAME,
        receive_size: int = RECEIVE_SIZE,
        buffers: FrameBuffers | None = None,
        pooled_up_to: int = FRAME_RESERVE,
    ):
        self.max_frame_size = max_frame_size
        # Frames up to this size take a whole buffer from the pool at once.
        # A client's declared size alone must not reserve memory, hence the
        # default; a peer answering a request whose size we bounded may be
        # trusted further.
        self.pooled_up_to = pooled_up_to
        self._buf = bytearray(receive_size)
        self._start = 0  # the unconsumed bytes are _buf[_start:_end]
        self._end = 0
        self._pool = buffers
        # The frame being received into its own buffer (which may be longer
        # than the frame): its declared size and how much of it has arrived.
        # All of _buf comes after it.
        self._frame: bytearray | None = None
        self._pooled = False  # taken from the pool: may be longer than the frame
        self._size = 0
        self._filled = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned in a frame."""
        pending = 4 + self._filled if self._frame is not None else 0
        return pending + self._end - self._start

    def get_buffer(self) -> memoryview:
        """Where the next received bytes go (never empty). Release the view
        (``with dec.get_buffer() as buf:``) before calling ``buffer_updated``:
        the decoder may grow the buffer behind it later."""
        frame = self._frame
        if frame is not None and self._filled < self._size:
            if self._filled == len(frame):
                frame += bytes(min(self._size, 2 * len(frame)) - len(frame))
            return memoryview(frame)[self._filled : self._size]
        free = len(self._buf) - self._end
        if not free or (self._start and free < OWN_BUFFER_FROM):
            self._make_room()
        return memoryview(self._buf)[self._end :]

    def buffer_updated(self, n: int) -> None:
        """``n`` bytes were written at the start of the last ``get_buffer``."""
        if self._frame is not None and self._filled < self._size:
            self._filled += n
        else:
            self._end += n

    def feed(self, data) -> None:
        view = memoryview(data).cast("B")
        while view:
            with self.get_buffer() as buf:
                n = min(len(buf), len(view))
                buf[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]

    def _make_room(self) -> None:
        start, end = self._start, self._end
        if start:
            self._buf[: end - start] = self._buf[start:end]
            self._start, self._end = 0, end - start
        else:
            # Only a caller that feeds without taking frames out, or with a
            # receive buffer under twice OWN_BUFFER_FROM, gets here.
            self._buf += bytes(len(self._buf))

    def next_frame(self) -> memoryview | None:
        """The next whole frame, or None until more bytes arrive."""
        frame = self._frame
        if frame is not None:
            if self._filled < self._size:
                return None
            self._frame = None
            view = memoryview(frame)
            if self._pooled:
                view = view[: self._size]
                self._pool.give_back(frame)
            return view
        start = self._start
        avail = self._end - start
        if avail < 4:
            if not avail:
                self._start = self._end = 0
            return None
        (size,) = INT32.unpack_from(self._buf, start)
        if size < 0:
            raise DecodeError(f"negative frame size {size}")
        if size > self.max_frame_size:
            raise FrameTooLargeError(size, self.max_frame_size)
        begin = start + 4
        if avail >= 4 + size:
            self._start = begin + size
            return memoryview(self._buf[begin : begin + size])
        if size < OWN_BUFFER_FROM:
            return None
        # The frame's remaining bytes will go straight into its own buffer;
        # only what already arrived with the previous bytes is copied.
        have = avail - 4
        self._pooled = self._pool is not None and size <= self.pooled_up_to
        if self._pooled:
            frame = self._pool.take(size)
        else:
            frame = bytearray(min(size, max(have, FRAME_RESERVE)))
        memoryview(frame)[:have] = memoryview(self._buf)[begin : self._end]
        self._frame, self._size, self._filled = frame, size, have
        self._start = self._end = 0
        return None


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


# Header versions by (api key, api version): looked up for every request
# and response, and the answer never changes.
_request_headers: dict[tuple[int, int], int] = {}
_response_headers: dict[tuple[int, int], int] = {}


def decode_request_header(frame) -> RequestFrame:
    """The request header of a frame for a known API key (any version)."""
    api_key, api_version, _ = peek_request(frame)
    header_version = _request_headers.get((api_key, api_version))
    if header_version is None:
        header_version = _request_headers[api_key, api_version] = request_header_version(api_key, api_version)
    header, pos = RequestHeader.decode_from(frame, 0, header_version)
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
    header_version = _response_headers.get((key, version))
    if header_version is None:
        header_version = _response_headers[key, version] = response_header_version(key, version)
    w = Writer()
    # ResponseHeader v0 is the correlation id; v1 adds an empty tagged-field section.
    w.buf += INT32.pack(correlation_id)
    if header_version:
        w.buf.append(0)
    body.write(w, version)
    chunks = w.chunks()
    return [INT32.pack(sum(len(c) for c in chunks)), *chunks]


def decode_response(api_key: int, version: int, frame) -> tuple[ResponseHeader, Message]:
    header, pos = ResponseHeader.decode_from(frame, 0, response_header_version(api_key, version))
    body = api_info(api_key).response.decode(memoryview(frame)[pos:], version)
    return header, body
