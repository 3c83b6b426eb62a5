"""pybroker.tls_stream against Python's own TLS client on a loopback
socket: the handshake, records decrypted into a buffer smaller than what
was sent, bytes and a file region sent as one encrypted stream, a refused
client certificate, and the peer's close_notify read as the end."""

from __future__ import annotations

import os
import socket
import ssl

import trio

from pybroker.storage.segment import FileRegion
from pybroker.tls_stream import TlsStream


def server_context(certs, require_client: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(certs.server.both))
    if require_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(certs.ca.path))
    return ctx


class Segment:
    """What a FileRegion asks of its segment file."""

    def __init__(self, fd: int):
        self.fd = fd
        self.truncations = 0


async def serve_one(ctx, client, server) -> object:
    """Run ``client(port)`` in a thread and ``server(stream)`` on the
    connection it makes; returns what the client returned."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:

        async def accept():
            raw = await listeners[0].accept()
            stream = TlsStream(raw, ctx)
            try:
                with trio.fail_after(10):
                    await server(stream)
            finally:
                await stream.aclose()

        nursery.start_soon(accept)
        result = await trio.to_thread.run_sync(client, port)
    await listeners[0].aclose()
    return result


def connect(certs, port: int, cert=None) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(certs.ca.path))
    if cert is not None:
        ctx.load_cert_chain(str(cert.both))
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(sock, server_hostname="127.0.0.1")


def receive_exactly(sock, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "closed early"
        data += chunk
    return bytes(data)


async def test_records_decrypt_into_a_small_buffer_and_answers_go_back_whole(certs, tmp_path):
    payload = os.urandom(300_000)  # some twenty TLS records
    segment = tmp_path / "segment"
    segment.write_bytes(os.urandom(50_000) + payload[:200_000])
    fd = os.open(segment, os.O_RDONLY)
    received = bytearray()

    def client(port):
        with connect(certs, port) as sock:
            sock.sendall(payload)
            return receive_exactly(sock, 3 + 200_000 + 300_000)

    async def server(stream):
        buffer = bytearray(10_000)
        while len(received) < len(payload):
            n = stream.receive_into(buffer)
            if n < 0:
                await stream.wait_readable()
                continue
            assert n > 0
            received.extend(buffer[:n])
        await stream.send_chunks([b"abc", FileRegion(Segment(fd), 50_000, 200_000), payload])

    try:
        answer = await serve_one(server_context(certs), client, server)
    finally:
        os.close(fd)
    assert bytes(received) == payload
    assert answer == b"abc" + payload[:200_000] + payload


async def test_the_peers_close_notify_is_the_end_of_the_stream(certs):
    ends = []

    def client(port):
        sock = connect(certs, port)
        sock.sendall(b"last words")
        try:
            sock.unwrap()  # sends close_notify, then waits for the server's, which never comes
        except (ssl.SSLError, OSError):
            pass
        sock.close()

    async def server(stream):
        buffer = bytearray(100)
        got = b""
        while True:
            n = stream.receive_into(buffer)
            if n < 0:
                await stream.wait_readable()
            elif n == 0:
                break
            else:
                got += buffer[:n]
        ends.append(got)

    await serve_one(server_context(certs), client, server)
    assert ends == [b"last words"]


async def test_a_client_without_the_required_certificate_breaks_the_handshake(certs):
    failures = []

    def client(port):
        try:
            with connect(certs, port, cert=certs.stranger) as sock:
                sock.recv(1)
        except (ssl.SSLError, OSError) as exc:
            return exc
        return None

    async def server(stream):
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            failures.append(exc.__cause__)

    refused = await serve_one(server_context(certs, require_client=True), client, server)
    assert isinstance(failures[0], ssl.SSLError)
    assert refused is not None
