"""A follower's connection to its leader: one request at a time, framed and
coded with the project's codec (protocol.framing), answers received
straight into the frame decoder's buffers so a large Fetch response is
not copied on its way to the log."""

from __future__ import annotations

import trio

from pybroker.protocol.framing import FrameBuffers, FrameDecoder, decode_response, encode_request
from pybroker.sasl.client import SaslLogin, SaslRefused

# Bytes asked of a TLS stream at a time.
RECEIVE_SIZE = 256 * 1024


class LinkError(Exception):
    """The connection cannot be used any more (closed, or out of step)."""


class Link:
    def __init__(self, stream: trio.abc.Stream, client_id: str, answers_up_to: int = 0):
        self.stream = stream
        self.client_id = client_id
        # A follower's Fetch answers are up to replica.fetch.response.max.bytes
        # (plus a little framing): received into recycled buffers, each
        # answer costs no allocation, zero fill or page faults, which at
        # replication's rates was a tenth of a broker's time.
        pool = FrameBuffers(limit=2 * answers_up_to) if answers_up_to else None
        self._frames = FrameDecoder(buffers=pool, pooled_up_to=answers_up_to)
        self._correlation = 0

    @classmethod
    async def open(cls, host: str, port: int, client_id: str, answers_up_to: int = 0, security=None) -> Link:
        """``answers_up_to``: the largest answer expected, when known and
        bounded by the requests sent; such answers reuse buffers.
        ``security``: the inter-broker listener's TLS and SASL
        (pybroker.inter_broker), None or PLAINTEXT for neither."""
        stream = await trio.open_tcp_stream(host, port)
        if security is None or security.protocol == "PLAINTEXT":
            return cls(stream, client_id, answers_up_to)
        try:
            if security.context is not None:
                stream = trio.SSLStream(stream, security.context,
                                        server_hostname=host if security.check_hostname else None)
                await stream.do_handshake()
            link = cls(stream, client_id, answers_up_to)
            if security.mechanism is not None:
                await link._log_in(security)
        except trio.BrokenResourceError as exc:
            await trio.aclose_forcefully(stream)
            raise LinkError(f"TLS with {host}:{port} failed: {exc.__cause__ or exc!r}") from None
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return link

    async def _log_in(self, security) -> None:
        """SaslHandshake v1 and SaslAuthenticate v1 with the broker's own
        user; a refusal is a LinkError with the other broker's words."""
        mechanism = security.mechanism
        login = SaslLogin(mechanism, security.username, security.password)
        try:
            request = login.next(await self.call(login.handshake(), 1))
            while request is not None:
                request = login.next(await self.call(request, 1))
        except SaslRefused as exc:
            if exc.api == "SaslHandshake":
                raise LinkError(f"{mechanism} is not enabled there (it enables {', '.join(exc.enabled)})") from None
            if exc.api == "SaslAuthenticate":
                raise LinkError(f"the broker refused this broker's {mechanism} login: {exc.message}") from None
            raise LinkError(str(exc)) from None

    async def call(self, body, version: int):
        """Send ``body`` and return the decoded response. Raises LinkError,
        OSError or trio errors when the connection fails, ProtocolError
        when the answer cannot be decoded; the link is unusable after any
        of them."""
        self._correlation += 1
        correlation = self._correlation
        await self.stream.send_all(encode_request(body, version, correlation, self.client_id))
        frames = self._frames
        sock = getattr(self.stream, "socket", None)
        while (frame := frames.next_frame()) is None:
            if sock is None:  # TLS: Trio decrypts
                data = await self.stream.receive_some(RECEIVE_SIZE)
                if not data:
                    raise LinkError("the leader closed the connection")
                frames.feed(data)
                continue
            with frames.get_buffer() as buf:
                n = await sock.recv_into(buf)
            if not n:
                raise LinkError("the leader closed the connection")
            frames.buffer_updated(n)
        header, response = decode_response(body.API_KEY, version, frame)
        if header.correlation_id != correlation:
            raise LinkError(f"answer to request {header.correlation_id} while waiting for {correlation}")
        return response

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
