"""Connections: frames in, handlers run in order, responses out in order.

Each connection has one reader task and one writer task. The reader decodes
a frame and runs its handler before reading the next, so a connection's
requests change broker state in the order they were sent. A handler that
must wait returns ``Later``; its wait runs in its own task while the reader
carries on, and the writer sends responses strictly in request order. A
handler whose work must finish before the next request is read, but does
not fit on the event loop, returns ``Hold``: the reader awaits it (its
answers so far go to the writer first). At
most ``queued.max.requests`` responses may be outstanding per connection
(and, sharing one send, up to 64 KiB of answered ones the writer has taken);
past that the reader stops reading, which pushes back on the client.

On plain TCP the reader receives straight into the frame decoder's buffers
and the writer sends a Fetch response's record data from the segment files
with sendfile (the response carries them as file regions). TLS
(pybroker.tls_stream) decrypts straight into the decoder's buffers and
reads file regions into the buffer it encrypts from; other streams get
bytes both ways.

A connection knows nothing of the broker that serves it: it is given a
``ServerContext``, which the composition root builds — the handler table,
the limits it reads from the config, the registry of open connections, the
shutdown flag and the frame buffers its connections share.

Bad input follows Kafka: an unknown API key, a version without a schema,
bytes that do not decode, or a frame above ``socket.request.max.bytes`` close
the connection with one log line; an ApiVersions request of a version we do
not know is answered with UNSUPPORTED_VERSION so the client can retry lower.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import EncodeError, ProtocolError, UnsupportedVersionError
from pybroker.protocol.framing import (
    RECEIVE_SIZE,
    FrameBuffers,
    FrameDecoder,
    decode_request_header,
    encode_response,
    peek_request,
)
from pybroker.protocol.messages.api_versions_response import ApiVersion, ApiVersionsResponse
from pybroker.protocol.registry import ApiKey, api_info
from pybroker.storage.segment import FileRegion, RegionGoneError

from .handlers import CloseConnection, Handler, Hold, Later
from .metrics.stats import RequestStats
from .quotas import ClientQuotas
from .tls_stream import TlsStream

if TYPE_CHECKING:
    from .config import BrokerConfig

log = logging.getLogger("pybroker.server")
# All a SASL listener's connection may ask before it is authenticated.
BEFORE_AUTHENTICATION = frozenset({ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE})
# A TLS client has this long to finish its handshake.
TLS_HANDSHAKE_TIMEOUT_S = 10.0
# Kafka's KafkaPrincipal.ANONYMOUS: a connection no one authenticated.
ANONYMOUS = "User:ANONYMOUS"
# Kafka's request logger: one DEBUG line per request answered.
request_log = logging.getLogger("pybroker.requests")
# Fetch responses on plain TCP send record data from the segment files.
SENDFILE = hasattr(os, "sendfile")
# sendfile refusing this pair of file and socket: send the bytes instead.
_NO_SENDFILE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}
_IOV_MAX = 1024  # buffers per sendmsg (Linux's UIO_MAXIOV)
GATHER_BYTES = 64 * 1024
# A connection is not read while the requests it is still owed answers to
# hold this many bytes (see Connection._read_frames).
MAX_WAITING_BYTES = 8 * 1024 * 1024


@dataclass(eq=False)
class ServerContext:
    """What connections need of the broker that serves them, and no more."""

    # Bound handlers by API key: what a frame is dispatched on.
    handlers: Mapping[int, Handler]
    # socket.request.max.bytes: a larger frame closes the connection.
    max_request_bytes: int
    # queued.max.requests: responses outstanding before reading pauses.
    max_queued: int
    # connections.max.idle.ms (0 or less: never closed for idleness).
    max_idle_ms: int
    # The open connections (shutdown and the idle check go over them).
    connections: set[Connection] = field(default_factory=set)
    # Set at shutdown: a connection that starts then reads nothing.
    stopping: bool = False
    # One pool for all connections: what one frees, another reuses.
    frame_buffers: FrameBuffers = field(default_factory=FrameBuffers)
    # Requests answered per API and version, and their latency (metrics/).
    requests: RequestStats | None = None
    # Connections accepted since start (the open ones are ``connections``).
    accepted: int = 0
    # The request log is on (pybroker.requests at DEBUG when the server was
    # made): checked once per request instead of asking logging each time.
    log_requests: bool = field(default_factory=lambda: request_log.isEnabledFor(logging.DEBUG))
    # Client quotas (pybroker.quotas): every answered request is charged
    # to its user and client id while ``quotas.active``, and a connection
    # over its quota is muted (see Connection._throttle).
    quotas: ClientQuotas = field(default_factory=ClientQuotas)

    def __post_init__(self):
        if self.requests is None:
            self.requests = RequestStats({key: h.max_version for key, h in self.handlers.items()})

    @classmethod
    def from_config(cls, config: BrokerConfig, handlers: Mapping[int, Handler], **more) -> ServerContext:
        """The limits as the broker's config sets them."""
        return cls(
            handlers,
            max_request_bytes=config["socket.request.max.bytes"],
            max_queued=config["queued.max.requests"],
            max_idle_ms=config["connections.max.idle.ms"],
            **more,
        )

    def stop_reading(self) -> None:
        """Shutdown: no connection takes a new request (queued ones are still answered)."""
        self.stopping = True
        for conn in list(self.connections):
            conn.stop_reading()


class RequestContext:
    """What a handler knows about the request besides its body."""

    __slots__ = (
        "api_version", "client_id", "correlation_id", "header", "listener", "peer", "principal", "session", "zero_copy",
    )

    def __init__(
        self, header, peer: str, zero_copy: bool = False, listener: str | None = None, session=None,
        principal: str = ANONYMOUS,
    ):
        self.header = header
        # Who sent it, as Kafka's KafkaPrincipal prints: "User:name"; a
        # connection neither SASL nor a client certificate names is
        # User:ANONYMOUS.
        self.principal = principal
        # A SASL listener's connection: its authentication (pybroker.sasl).
        self.session = session
        # The listener the connection came in on: its addresses are the
        # ones this client is given (None: no listener, as in unit tests).
        self.listener = listener
        self.api_version = header.request_api_version
        self.correlation_id = header.correlation_id
        self.client_id = header.client_id
        self.peer = peer
        # Record data may be answered with file regions (see Connection._send).
        self.zero_copy = zero_copy


class _Slot:
    __slots__ = ("chunks", "done")

    def __init__(self, chunks: list | None = None):
        # Answered now: one shared event that is always set (waiting on a
        # set event touches nothing of it). Answered later: an event of its own.
        self.done = _ANSWERED if chunks is not None else trio.Event()
        self.chunks = chunks


_ANSWERED = trio.Event()
_ANSWERED.set()


class _Held:
    """A handler's Hold, with what its answer needs."""

    __slots__ = ("api_key", "api_version", "charge", "correlation_id", "hold", "size", "started")

    def __init__(
        self, hold: Hold, api_version: int, correlation_id: int, api_key: int, size: int, started: float, charge=None
    ):
        self.hold = hold
        self.charge = charge
        self.api_version = api_version
        self.correlation_id = correlation_id
        self.api_key = api_key
        self.size = size
        self.started = started


class Connection:
    def __init__(
        self,
        server: ServerContext,
        stream: trio.abc.Stream,
        peer: str | None = None,
        listener: str | None = None,
        session=None,
        principal: str = ANONYMOUS,
    ):
        self.server = server
        self.stream = stream
        self.peer = peer or _peer_of(stream)
        self.listener = listener
        self.session = session
        # Before SASL authentication, and on listeners without SASL: from
        # the TLS client certificate, else User:ANONYMOUS.
        self.principal = principal
        self.client_id: str | None = None  # of the latest request, for the request log
        self.frames = FrameDecoder(server.max_request_bytes, buffers=server.frame_buffers)
        # Seen by close_idle_connections: the last byte in or out, and the
        # responses still being worked out (a connection waiting for its
        # long poll is not idle; one whose answers wait for the client to
        # read them is, as Kafka counts only socket I/O).
        self.last_active = time.monotonic()
        self._working = 0
        self._pending = 0
        # Request bytes whose answers are still being worked out (an acks=all
        # produce waiting for its followers, a long poll), and who waits for
        # them to fall under the bound.
        self._waiting_bytes = 0
        self._room: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        # Over a client quota: no request is read before this (trio time; 0: not muted).
        self._muted_until = 0.0
        self.max_queued = server.max_queued
        self._read_scope = trio.CancelScope()
        # Plain TCP only: TLS or a test's memory stream has no socket to
        # send a file to.
        self.sock = getattr(stream, "socket", None)
        # TLS: reads and writes of its own; file regions are read into the
        # buffer it encrypts from.
        self.tls = stream if type(stream) is TlsStream else None
        self.zero_copy = (SENDFILE and self.sock is not None) or self.tls is not None
        # The socket's descriptor, for plain reads and writes without Trio's
        # socket wrappers (a cancellation point and a yield on every call).
        # Only serve() closes the stream, once neither task can use it, so
        # the number cannot be reused under them.
        self.fd = self.sock.fileno() if self.sock is not None else -1

    def stop_reading(self) -> None:
        """Shutdown: take no new requests; the queued ones still get answers."""
        self._read_scope.cancel()

    def idle_since(self, now: float) -> float:
        """Seconds without socket traffic while no response is being worked out."""
        return 0.0 if self._working else now - self.last_active

    def close(self) -> None:
        """Drop the connection now, answered or not (serve() closes the socket)."""
        self._abort()

    def _abort(self) -> None:
        """Stop both tasks; serve() then closes the socket."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def serve(self) -> None:
        log.debug("connection from %s", self.peer)
        send, recv = trio.open_memory_channel(self.max_queued)
        self.server.connections.add(self)
        self.server.accepted += 1
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._write, recv)
                async with send:
                    await self._read(send, nursery)
        except Exception:
            # A bug met by this connection (a response that would not
            # encode, say) costs the connection, never the broker.
            log.exception("closing connection from %s after an unexpected error", self.peer)
        finally:
            self.server.connections.discard(self)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)
            log.debug("connection from %s closed", self.peer)

    async def _read(self, send, nursery) -> None:
        try:
            with self._read_scope:
                await self._read_frames(send, nursery)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    async def _read_frames(self, send, nursery) -> None:
        server = self.server
        frames = self.frames
        # Plain TCP receives straight into the decoder's buffers (no copy on
        # the way to the log); other streams hand over fresh bytes.
        fd = self.fd
        waited = False
        while not server.stopping:
            if self._waiting_bytes >= MAX_WAITING_BYTES:
                # Kafka reads no request from a connection while one is in
                # progress; pipelining is kept here, but only while the
                # requests still waiting hold little memory. Without a
                # bound, a producer's unanswered acks=all requests (each
                # up to a MiB per partition) pile up by the hundred, and
                # their buffers can no longer be recycled.
                self._room = trio.Event()
                await self._room.wait()
                waited = True
            if fd >= 0:
                with frames.get_buffer() as buf:
                    try:
                        n = os.readv(fd, (buf,))
                    except BlockingIOError:
                        n = -1
                if n < 0:
                    await trio.lowlevel.wait_readable(fd)
                    waited = True
                    continue
                frames.buffer_updated(n)
            elif self.tls is not None:
                with frames.get_buffer() as buf:
                    n = self.tls.receive_into(buf)
                if n < 0:
                    await self.tls.wait_readable()
                    waited = True
                    continue
                frames.buffer_updated(n)
            else:
                data = await self.stream.receive_some(RECEIVE_SIZE)
                n = len(data)
                frames.feed(data)
                waited = True
            if not n:
                # The peer is gone. Answers still being worked out (a
                # long-poll Fetch may legally wait 2^31 ms, a JoinGroup
                # a whole rebalance) can never be read: drop them and
                # close now, as Kafka does, rather than hold the socket
                # until they finish.
                nursery.cancel_scope.cancel()
                return
            self.last_active = time.monotonic()
            try:
                await self._answer_frames(send, nursery)
            except _CloseConnection as exc:
                log.info("closing connection from %s: %s", self.peer, exc)
                return
            except ProtocolError as exc:
                log.info("closing connection from %s: %s", self.peer, exc)
                return
            if not waited:
                # A client that keeps the socket full must not starve the
                # others: one yield per receive that did not wait.
                await trio.lowlevel.checkpoint()
            waited = False

    async def _answer_frames(self, send, nursery) -> None:
        """Handle every whole frame received so far. While the writer owes
        nothing, answered responses leave from here, together in one write,
        without waking the writer; everything else queues for it in order."""
        direct: list = []
        while True:
            if self._muted_until:
                direct = await self._throttle(send, direct)
            frame = self.frames.next_frame()
            if frame is None:
                break
            slot = self._dispatch(frame, nursery, len(frame))
            if type(slot) is _Held:
                if direct:
                    await self._queue(send, _Slot(direct))
                    direct = []
                slot = await self._hold(slot, nursery)
            if slot is None:
                continue
            if not self._pending and self.fd >= 0 and slot.done.is_set() and _plain(slot.chunks):
                direct += slot.chunks
            else:
                if direct:
                    await self._queue(send, _Slot(direct))
                    direct = []
                await self._queue(send, slot)
            if self.session is not None and self.session.failed:
                # The refusal leaves first; then the connection is closed.
                if direct:
                    await self._queue(send, _Slot(direct))
                raise _CloseConnection("SASL authentication failed")
        if direct:
            rest = self._write_now(direct)
            if rest:
                await self._queue(send, _Slot(rest))

    async def _queue(self, send, slot: _Slot) -> None:
        self._pending += 1
        # Without a checkpoint while there is room: the answers to one
        # receive's requests then reach the writer together.
        try:
            send.send_nowait(slot)
        except trio.WouldBlock:
            await send.send(slot)

    async def _throttle(self, send, direct: list) -> list:
        """A client over its quota (KIP-219): its answers leave now, with
        the throttle time in them; then it has no further request read
        until that time is over, as Kafka mutes the channel."""
        if direct:
            await self._queue(send, _Slot(direct))
        while (until := self._muted_until) > trio.current_time():
            await trio.sleep_until(until)
        self._muted_until = 0.0
        return []

    def _charge(self, charge: tuple, api_key: int, version: int, size: int, answered: bool = True) -> tuple:
        """Count a request against its quotas as it is taken; over one,
        the connection is muted. What ``_charge_response`` then needs."""
        principal, client_id, request, busy = charge
        now = trio.current_time()
        ms = self.server.quotas.charge_request(
            api_key, version, request, principal, client_id, size, busy, now * 1000.0, answered
        )
        if ms > 0:
            self._muted_until = max(self._muted_until, now + ms / 1000.0)
        return principal, client_id, request, ms

    def _charge_response(self, charged: tuple, api_key: int, version: int, response) -> None:
        """The answer's share (a consumer Fetch's bytes); the response
        carries the throttle time."""
        principal, client_id, request, ms = charged
        now = trio.current_time()
        more = self.server.quotas.charge_response(
            api_key, version, request, response, principal, client_id, ms, now * 1000.0
        )
        if more > ms:
            self._muted_until = max(self._muted_until, now + more / 1000.0)

    def _raw_token(self, session, frame) -> _Slot:
        """After a SaslHandshake v0 the SASL tokens travel bare, each after
        its size only, and so do the answers, until the exchange completes
        (KIP-43; old librdkafka and sarama's default). A refused token
        closes the connection: v0 has no way to say why."""
        try:
            reply = session.step(bytes(frame))
        except Exception as exc:  # noqa: BLE001 - SaslFailure, or the mechanism's own fault
            raise _CloseConnection(f"SASL {session.mechanism} authentication (SaslHandshake v0) failed: {exc}") from None
        if session.authenticated:
            session.raw_tokens = False
        return _Slot([len(reply).to_bytes(4, "big") + reply])

    def _write_now(self, buffers: list) -> list:
        """Write what the socket takes without waiting; return the rest."""
        try:
            n = os.writev(self.fd, buffers[:_IOV_MAX])
        except BlockingIOError:
            return buffers
        self.last_active = time.monotonic()
        return _drop_sent(buffers, n)

    def _dispatch(self, frame, nursery, size: int) -> _Slot | _Held | None:
        if self.session is not None and self.session.raw_tokens:
            return self._raw_token(self.session, frame)
        started = perf_counter()
        api_key, api_version, correlation_id = peek_request(frame)
        handler = self.server.handlers.get(api_key)
        if handler is None:
            raise _CloseConnection(f"unsupported api key {api_key}")
        session = self.session
        if session is not None:
            if not session.authenticated and api_key not in BEFORE_AUTHENTICATION:
                raise _CloseConnection(f"{ApiKey(api_key).name} request before SASL authentication")
            if session.reauthenticating and api_key != ApiKey.SASL_AUTHENTICATE:
                raise _CloseConnection(f"{ApiKey(api_key).name} request during SASL re-authentication")
            if session.expires_at is not None and not session.reauthenticating:
                now = time.monotonic()
                if session.expired(now) and not (api_key == ApiKey.SASL_HANDSHAKE and session.may_reauthenticate(now)):
                    # KIP-368: Kafka's SocketServer closes a connection whose
                    # session ended once it asks anything but to re-authenticate.
                    raise _CloseConnection(f"{ApiKey(api_key).name} request after its SASL session expired")
        if not handler.min_version <= api_version <= handler.max_version:
            if api_key == ApiKey.API_VERSIONS:
                return self._ready(self._api_versions_fallback(), 0, correlation_id, api_key)
            raise _CloseConnection(f"unsupported version {api_version} of {ApiKey(api_key).name}")
        try:
            header, pos = decode_request_header(frame)
            # decode_from, not decode: bytes after the body are ignored, as
            # Kafka ignores them. librdkafka's Metadata v9+ for all topics
            # (AdminClient.list_topics, kcat -L) leaves 3 such bytes: it
            # reserves 4 bytes for the topic count and never shrinks them
            # to the 1-byte null (rd_kafka_MetadataRequest0).
            body, _ = api_info(api_key).request.decode_from(frame, pos, api_version)
        except UnsupportedVersionError as exc:
            raise _CloseConnection(str(exc)) from None
        principal = session.principal if session is not None and session.authenticated else self.principal
        ctx = RequestContext(header, self.peer, self.zero_copy, self.listener, session, principal)
        self.client_id = header.client_id
        try:
            result = handler.fn(ctx, body)
        except CloseConnection as exc:
            raise _CloseConnection(str(exc)) from None
        except Exception:
            log.exception("%s v%d from %s failed", ApiKey(api_key).name, api_version, self.peer)
            raise _CloseConnection("handler failed") from None
        charge = None
        if self.server.quotas.active and (session is None or session.authenticated):
            # What the quotas need once the answer is known; the handler's
            # time on the event loop is its request time.
            charge = (principal, header.client_id, body, perf_counter() - started)
        if isinstance(result, Hold):
            return _Held(result, api_version, correlation_id, api_key, size, started, charge)
        return self._slot_for(result, api_version, correlation_id, api_key, nursery, size, started, charge)

    def _slot_for(
        self, result, api_version: int, correlation_id: int, api_key: int, nursery, size: int, started: float,
        charge: tuple | None = None,
    ) -> _Slot | None:
        """A handler's result as the writer takes it (``size``: the request's
        bytes; ``started``: when its frame was taken, for its latency;
        ``charge``: for the quotas, None while there are none)."""
        if charge is not None:
            charge = self._charge(charge, api_key, api_version, size, result is not None)
        if result is None:
            self._answered(api_key, api_version, started)
            return None
        if isinstance(result, Later):
            slot = _Slot()
            self._working += 1
            self._waiting_bytes += size
            nursery.start_soon(
                self._finish_later, slot, result, api_version, correlation_id, api_key, size, started, charge
            )
            return slot
        try:
            if charge is not None:
                self._charge_response(charge, api_key, api_version, result)
            slot = self._ready(result, api_version, correlation_id, api_key)
            self._answered(api_key, api_version, started)
            return slot
        except EncodeError:
            # Our response, not the client's bytes, is at fault: a bug to show whole.
            log.exception("%s v%d from %s: the response cannot be encoded", ApiKey(api_key).name, api_version, self.peer)
            raise _CloseConnection("handler failed") from None

    async def _hold(self, held: _Held, nursery) -> _Slot | None:
        """Run a Hold to its end before the next request is read."""
        # Working on a request: close_idle_connections leaves this one alone.
        self._working += 1
        try:
            result = await held.hold.run()
        except CloseConnection as exc:
            raise _CloseConnection(str(exc)) from None
        except Exception:
            log.exception("%s v%d from %s failed", ApiKey(held.api_key).name, held.api_version, self.peer)
            raise _CloseConnection("handler failed") from None
        finally:
            self._working -= 1
            self.last_active = time.monotonic()
        return self._slot_for(
            result, held.api_version, held.correlation_id, held.api_key, nursery, held.size, held.started, held.charge
        )

    def _answered(self, api_key: int, version: int, started: float) -> None:
        elapsed = perf_counter() - started
        self.server.requests.observe(api_key, version, elapsed)
        if self.server.log_requests:
            name = api_info(api_key).request.NAME.removesuffix("Request")  # Kafka's spelling: Produce
            session = self.session
            principal = session.principal if session is not None and session.authenticated else self.principal
            request_log.debug("%s v%d from %s %s client %r: %.2f ms", name, version, self.peer, principal,
                              self.client_id, elapsed * 1000)

    def _ready(self, response, version: int, correlation_id: int, api_key: int) -> _Slot:
        return _Slot(encode_response(response, version, correlation_id, api_key))

    async def _finish_later(
        self, slot: _Slot, later: Later, version, correlation_id, api_key, size: int, started: float,
        charge: tuple | None = None,
    ) -> None:
        try:
            response = await later.run()
            if charge is not None and response is not None:
                self._charge_response(charge, api_key, version, response)
            if response is not None:
                slot.chunks = encode_response(response, version, correlation_id, api_key)
            self._answered(api_key, version, started)
        except Exception:
            # The client cannot be answered out of order: drop the connection.
            log.exception("%s v%d from %s failed", ApiKey(api_key).name, version, self.peer)
            self._abort()
        finally:
            self._working -= 1
            # Idle from now on at the earliest, not from when the request came.
            self.last_active = time.monotonic()
            slot.done.set()
            self._waiting_bytes -= size
            if self._room is not None and self._waiting_bytes < MAX_WAITING_BYTES:
                self._room.set()
                self._room = None

    def _api_versions_fallback(self) -> ApiVersionsResponse:
        """KIP-511: a client that sent an ApiVersions version we do not know
        gets error 35 and our ApiVersions range, in the v0 layout it can
        always read, and retries at a version we have."""
        h = self.server.handlers[ApiKey.API_VERSIONS]
        return ApiVersionsResponse(
            error_code=ErrorCode.UNSUPPORTED_VERSION,
            api_keys=[ApiVersion(api_key=ApiKey.API_VERSIONS, min_version=h.min_version, max_version=h.max_version)],
        )

    async def _write(self, recv) -> None:
        try:
            async with recv:
                slot = None
                while True:
                    if slot is None:
                        try:
                            slot = await recv.receive()
                        except trio.EndOfChannel:
                            return
                    await slot.done.wait()
                    chunks, slot, taken = _answered(slot, recv)
                    if chunks:
                        await self._send(chunks)
                        self.last_active = time.monotonic()
                    self._pending -= taken
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            # The peer went away; stop reading too.
            self._abort()
        except RegionGoneError as exc:
            # The frame's length is promised already: nothing else to send.
            log.info("closing connection from %s: %s", self.peer, exc)
            self._abort()

    async def _send(self, chunks: list) -> None:
        """Responses, in order: buffers with vectored sends, file regions
        with sendfile from the segment file straight into the socket."""
        if self.tls is not None:
            await self.tls.send_chunks(chunks)
            return
        if self.sock is None:
            # No socket to send a file to (a memory stream): a file region
            # goes as its bytes.
            chunks = [c.read() if type(c) is FileRegion else c for c in chunks]
            for chunk in _coalesce(chunks):
                await self.stream.send_all(chunk)
            return
        pending: list = []
        for chunk in chunks:
            if type(chunk) is not FileRegion:
                pending.append(chunk)
                continue
            if pending:
                # MSG_MORE: the bytes before a region leave with it, not as
                # a packet of their own.
                await self._send_buffers(pending, socket.MSG_MORE)
                pending = []
            await self._send_region(chunk)
        if pending:
            await self._send_buffers(pending, 0)

    async def _send_buffers(self, buffers: list, flags: int) -> None:
        """Send ``buffers`` in order."""
        while buffers:
            if flags:
                n = await self.sock.sendmsg(buffers[:_IOV_MAX], (), flags)
                self.last_active = time.monotonic()
            else:
                try:
                    n = os.writev(self.fd, buffers[:_IOV_MAX])
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(self.fd)
                    # Room again: the client read; a slow reader is not idle.
                    self.last_active = time.monotonic()
                    continue
            buffers = _drop_sent(buffers, n)
            if buffers and flags:
                self._push()

    def _push(self) -> None:
        """Send what a send with MSG_MORE (ours, or sendfile's own for all
        but its last piece) left corked. Before waiting for room: with
        nothing else in flight the tail would wait for TCP's 200 ms timer.
        Setting TCP_NODELAY pushes it out."""
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def _send_region(self, region: FileRegion) -> None:
        out = self.sock.fileno()
        sent = 0
        while sent < region.length:
            if not self.zero_copy:
                await self._send_buffers([region.read(sent)], 0)
                return
            try:
                n = os.sendfile(out, region.fileno(), region.position + sent, region.length - sent)
            except BlockingIOError:
                self._push()
                await trio.lowlevel.wait_writable(out)
                self.last_active = time.monotonic()
                continue
            except OSError as exc:
                if exc.errno not in _NO_SENDFILE:
                    raise
                log.info("sendfile refused for %s (%s): sending bytes instead", self.peer, exc)
                self.zero_copy = False
                continue
            if not n:
                raise RegionGoneError(f"segment file ends inside a region read from it at {region.position}")
            sent += n


def _answered(slot: _Slot, recv) -> tuple[list, _Slot | None, int]:
    """The response of ``slot`` and of the slots queued behind it that are
    answered already, to leave together; the first that is not; and how
    many slots the responses came from. Only small answers are gathered
    (up to GATHER_BYTES): large ones gain nothing from sharing a send, and
    every slot taken out of the queue lets the reader take one more request."""
    chunks = list(slot.chunks or ())
    size = sum(map(len, chunks))
    taken = 1
    while size < GATHER_BYTES:
        try:
            slot = recv.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return chunks, None, taken
        if not slot.done.is_set():
            return chunks, slot, taken
        taken += 1
        if slot.chunks:
            chunks += slot.chunks
            size += sum(map(len, slot.chunks))
    return chunks, None, taken


def _plain(chunks) -> bool:
    """Bytes only: no file region (those go by sendfile, from the writer)."""
    return chunks is not None and not any(type(c) is FileRegion for c in chunks)


def _drop_sent(buffers: list, n: int) -> list:
    """What is left of ``buffers`` once ``n`` bytes of them were sent."""
    first = 0
    while n:
        size = len(buffers[first])
        if n < size:
            return [memoryview(buffers[first])[n:], *buffers[first + 1 :]]
        n -= size
        first += 1
    # An empty buffer sends nothing: left in front, it would be retried for ever.
    while first < len(buffers) and not len(buffers[first]):
        first += 1
    return buffers[first:] if first else buffers


async def close_idle_connections(server: ServerContext) -> None:
    """``connections.max.idle.ms``: close connections whose socket neither
    sent nor received anything for that long while no response was being
    worked out, also those whose answers wait for a client that stopped
    reading (they hold the answers' memory and segment files). Checked a
    few times per idle period, as Kafka's selector checks on its polls."""
    idle_seconds = server.max_idle_ms / 1000
    while True:
        await trio.sleep(min(max(idle_seconds / 4, 0.05), 30.0))
        now = time.monotonic()
        for conn in list(server.connections):
            if conn.idle_since(now) >= idle_seconds:
                log.debug("closing idle connection from %s", conn.peer)
                conn.close()


async def serve_tls(
    server: ServerContext, raw: trio.SocketStream, context, listener: str, session=None, principal_of=None
) -> None:
    """A connection to an SSL listener: the TLS handshake, bounded in time,
    then the Kafka protocol inside it. A failed handshake (a plaintext
    client, an untrusted or missing client certificate, no common
    version) is one log line and a closed connection."""
    peer = _peer_of(raw)
    stream = TlsStream(raw, context)
    try:
        with trio.fail_after(TLS_HANDSHAKE_TIMEOUT_S):
            await stream.do_handshake()
    except (trio.BrokenResourceError, trio.TooSlowError, OSError) as exc:
        cause = exc.__cause__ or exc
        log.info("TLS handshake with %s on listener %s failed: %s", peer, listener, cause or type(exc).__name__)
        await trio.aclose_forcefully(raw)
        return
    principal = ANONYMOUS
    if principal_of is not None and session is None:
        # An SSL listener: the client certificate names the principal (a
        # SASL_SSL one is named by its SASL login instead, as in Kafka).
        try:
            principal = principal_of(stream.getpeercert(binary_form=True))
        except Exception as exc:  # noqa: BLE001 - a certificate no rule maps, or one we cannot read
            log.info("TLS client %s on listener %s refused: %s", peer, listener, exc)
            await trio.aclose_forcefully(stream)
            return
    await Connection(server, stream, peer=peer, listener=listener, session=session, principal=principal).serve()


def _peer_of(stream) -> str:
    """host:port of the socket under ``stream`` (also under TLS), "?" without one."""
    while stream is not None:
        sock = getattr(stream, "socket", None)
        if sock is not None:
            try:
                host, port = sock.getpeername()[:2]
                return f"{host}:{port}"
            except (OSError, ValueError):  # gone already; not an IP socket
                return "?"
        stream = getattr(stream, "transport_stream", None)
    return "?"


def _coalesce(chunks: list) -> list:
    """Join small pieces into one send; pass large ones through untouched."""
    if len(chunks) <= 1 or sum(len(c) for c in chunks) <= 64 * 1024:
        return [b"".join(chunks)] if len(chunks) > 1 else chunks
    return chunks


class _CloseConnection(Exception):
    pass
