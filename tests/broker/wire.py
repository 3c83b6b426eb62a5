"""A minimal raw Kafka client for tests that need exact control of the
bytes on the wire (pipelining, malformed frames). Real clients cover the
rest."""

from __future__ import annotations

import socket
import time

from pybroker.protocol.framing import FrameDecoder, decode_response, encode_request
from pybroker.protocol.primitives import INT32


class Wire:
    def __init__(self, bootstrap: str, timeout: float = 10):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.frames = FrameDecoder()
        self.timeout = timeout

    def send(self, body, version: int, correlation_id: int, client_id: str = "wire") -> None:
        self.sock.sendall(encode_request(body, version, correlation_id, client_id))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self) -> memoryview | None:
        """The next response frame, or None if the broker closed the connection."""
        deadline = time.monotonic() + self.timeout
        while (frame := self.frames.next_frame()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("no response")
            data = self.sock.recv(65536)
            if not data:
                return None
            self.frames.feed(data)
        return frame

    def receive(self, api_key: int, version: int):
        frame = self.frame()
        if frame is None:
            raise ConnectionError("closed by broker")
        return decode_response(api_key, version, frame)

    def correlation_of_next(self) -> int | None:
        frame = self.frame()
        return None if frame is None else INT32.unpack_from(frame, 0)[0]

    def closed_by_peer(self) -> bool:
        try:
            return self.frame() is None
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()
