"""A follower's connection to its leader: one request at a time, framed and
coded with the project's codec (protocol.framing), answers received
straight into the frame decoder's buffers so a large Fetch response is
not copied on its way to the log."""

from __future__ import annotations

import trio

from pybroker.protocol.framing import FrameBuffers, FrameDecoder, decode_response, encode_request


class LinkError(Exception):
    """The connection cannot be used any more (closed, or out of step)."""


class Link:
    def __init__(self, stream: trio.SocketStream, client_id: str, answers_up_to: int = 0):
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
    async def open(cls, host: str, port: int, client_id: str, answers_up_to: int = 0) -> Link:
        """``answers_up_to``: the largest answer expected, when known and
        bounded by the requests sent; such answers reuse buffers."""
        return cls(await trio.open_tcp_stream(host, port), client_id, answers_up_to)

    async def call(self, body, version: int):
        """Send ``body`` and return the decoded response. Raises LinkError,
        OSError or trio errors when the connection fails, ProtocolError
        when the answer cannot be decoded; the link is unusable after any
        of them."""
        self._correlation += 1
        correlation = self._correlation
        await self.stream.send_all(encode_request(body, version, correlation, self.client_id))
        frames = self._frames
        sock = self.stream.socket
        while (frame := frames.next_frame()) is None:
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
