"""A TCP proxy (127.0.0.1 only) that can lose one Produce response.

It sits between a client and the broker (the broker advertises the proxy's
port, so every connection of the client goes through it) and passes bytes
both ways, reading the Kafka frames as they go by. Armed with ``arm()``, it
waits for the next Produce response from the broker — the broker has
appended the batch by then — and instead of delivering it closes both
sides of that connection: the client never learns that its batch was
written, and must retry. With ``hold=True`` it then refuses the client's
reconnections until ``release()``, so a test can restart the broker while
the client keeps retrying.

Every Produce request's batches (producer id, epoch, base sequence, record
count) are recorded, so a test can show that a lost batch was really sent
twice.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass

from pybroker.protocol.framing import decode_request, decode_response
from pybroker.protocol.record_batch import iter_batches
from pybroker.protocol.registry import ApiKey

_INT32 = struct.Struct(">i")


@dataclass(frozen=True)
class SentBatch:
    topic: str
    partition: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int


class _Frames:
    """Splits a byte stream into size-prefixed frames."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        frames = []
        while len(self.buf) >= 4:
            (size,) = _INT32.unpack_from(self.buf, 0)
            if len(self.buf) < 4 + size:
                break
            frames.append(bytes(self.buf[: 4 + size]))
            del self.buf[: 4 + size]
        return frames


class CuttingProxy:
    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upstream_port: int | None = None
        self._lock = threading.Lock()
        self._armed = False
        self._hold = False
        self._holding = threading.Event()
        self.cut = threading.Event()  # set once a Produce response was swallowed
        self.swallowed: list = []  # (ProduceResponse, [SentBatch]) of each cut
        self.sent: list[SentBatch] = []
        self.refused = 0
        self._socks: set[socket.socket] = set()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="cutting-proxy", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, upstream_port: int) -> CuttingProxy:
        self.upstream_port = upstream_port
        self._thread.start()
        return self

    def arm(self, hold: bool = False) -> None:
        with self._lock:
            self.cut.clear()
            self._armed = True
            self._hold = hold

    def release(self) -> None:
        with self._lock:
            self._holding.clear()

    def close(self) -> None:
        self._closed = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            close_socket(s)
        self._thread.join(10)

    # -- internals ---------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._holding.is_set():
                self.refused += 1
                close_socket(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                close_socket(client)  # broker down: the client sees a dropped connection and retries
                continue
            with self._lock:
                self._socks.update((client, upstream))
            pending: dict[int, tuple[int, int, list[SentBatch]]] = {}  # correlation id -> (key, version, batches)
            threading.Thread(target=self._requests, args=(client, upstream, pending), daemon=True).start()
            threading.Thread(target=self._responses, args=(client, upstream, pending), daemon=True).start()

    def _requests(self, client, upstream, pending) -> None:
        frames = _Frames()
        try:
            while data := client.recv(65536):
                # Record each complete request before its last byte goes on,
                # so its response can never be read before it is known.
                for frame in frames.feed(data):
                    self._note_request(frame[4:], pending)
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(client, upstream)

    def _note_request(self, frame: bytes, pending) -> None:
        api_key, version = struct.unpack_from(">hh", frame, 0)
        (correlation_id,) = _INT32.unpack_from(frame, 4)
        batches = []
        if api_key == ApiKey.PRODUCE:
            _, request = decode_request(frame)
            for topic in request.topic_data:
                for part in topic.partition_data:
                    for b in iter_batches(part.records):
                        batches.append(
                            SentBatch(
                                topic.name, part.index, b.producer_id, b.producer_epoch, b.base_sequence, b.record_count
                            )
                        )
            with self._lock:
                self.sent += batches
        pending[correlation_id] = (api_key, version, batches)

    def _responses(self, client, upstream, pending) -> None:
        frames = _Frames()
        try:
            while data := upstream.recv(65536):
                for frame in frames.feed(data):
                    (correlation_id,) = _INT32.unpack_from(frame, 4)
                    api_key, version, batches = pending.pop(correlation_id, (None, None, None))
                    if api_key == ApiKey.PRODUCE and self._take_cut():
                        _, response = decode_response(api_key, version, frame[4:])
                        with self._lock:
                            self.swallowed.append((response, batches))
                        self._drop(client, upstream)
                        self.cut.set()
                        return
                    client.sendall(frame)
        except OSError:
            pass
        finally:
            self._drop(client, upstream)

    def _take_cut(self) -> bool:
        with self._lock:
            if not self._armed:
                return False
            self._armed = False
            if self._hold:
                self._holding.set()
            return True

    def _drop(self, client, upstream) -> None:
        with self._lock:
            self._socks.discard(client)
            self._socks.discard(upstream)
        close_socket(client)
        close_socket(upstream)


def close_socket(sock: socket.socket) -> None:
    """Shut both directions, then close; a socket already gone is fine."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
