"""A broker in this process whose connections run over ``trio.testing``
memory streams instead of sockets: the stream path of ``Connection`` (no
sendfile, no plain descriptor reads and writes), the one TLS takes too.

Requests are real frames from the project's codec; a task of the client's
own collects the responses, so a test can also see that nothing has come
(yet) once every task is blocked.
"""

from __future__ import annotations

from collections.abc import Iterator

import trio
import trio.testing

from pybroker.broker import Broker
from pybroker.config import BrokerConfig
from pybroker.protocol.framing import FrameDecoder, decode_response, encode_request
from pybroker.protocol.primitives import INT32
from pybroker.protocol.record_batch import split_batches
from pybroker.server import Connection, ServerContext

TIMEOUT = 10


def make_broker(data_dir, **props: str) -> Broker:
    """A loaded broker over ``data_dir`` that is not running: no listener,
    no background task; the test serves its connections."""
    settings = {"log.dirs": str(data_dir), "listeners": "PLAINTEXT://127.0.0.1:0"}
    settings.update({k.replace("_", "."): v for k, v in props.items()})
    return Broker(BrokerConfig(settings))


class MemoryClient:
    """One client connection over a memory stream."""

    def __init__(self, stream: trio.abc.Stream, conn: Connection):
        self.stream = stream
        self.conn = conn
        self.frames = FrameDecoder()
        self._send, self._responses = trio.open_memory_channel(1000)

    async def send(self, body, version: int, correlation_id: int) -> None:
        await self.send_raw(encode_request(body, version, correlation_id, "memory"))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def collect(self) -> None:
        async with self._send:
            while data := await self.stream.receive_some(65536):
                self.frames.feed(data)
                while (frame := self.frames.next_frame()) is not None:
                    self._send.send_nowait(bytes(frame))

    async def frame(self) -> bytes | None:
        """The next response frame; None once the broker closed the connection."""
        with trio.fail_after(TIMEOUT):
            try:
                return await self._responses.receive()
            except trio.EndOfChannel:
                return None

    async def receive(self, api_key: int, version: int, correlation_id: int | None = None):
        frame = await self.frame()
        assert frame is not None, "closed by the broker"
        header, body = decode_response(api_key, version, frame)
        if correlation_id is not None:
            assert header.correlation_id == correlation_id
        return body

    async def correlation_of_next(self) -> int | None:
        frame = await self.frame()
        return None if frame is None else INT32.unpack_from(frame, 0)[0]

    async def closed_by_broker(self) -> bool:
        return await self.frame() is None

    def nothing_received(self) -> bool:
        """No response (and no close) has arrived so far."""
        try:
            self._responses.receive_nowait()
        except trio.WouldBlock:
            return True
        except trio.EndOfChannel:
            return False
        return False


def connect(nursery: trio.Nursery, server: ServerContext, peer: str = "memory:1") -> MemoryClient:
    """A connection of ``server`` served over a fresh memory stream pair."""
    ours, theirs = trio.testing.memory_stream_pair()
    conn = Connection(server, theirs, peer)
    client = MemoryClient(ours, conn)
    nursery.start_soon(conn.serve)
    nursery.start_soon(client.collect)
    return client


def values_of(records) -> list[bytes]:
    """The values of every record in a Fetch response's records, in order."""
    batches, _ = split_batches(records)
    return [r.value for b in batches for r in b.records()]


def records_of(fetch_response) -> Iterator:
    for t in fetch_response.responses:
        yield from t.partitions
