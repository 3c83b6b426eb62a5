"""TLS on a connection's socket, shaped for how a connection moves bytes.

trio's SSLStream hands out one TLS record (16 KiB at most) per
``receive_some`` and takes one buffer per ``send_all``, each call going
through its locks, conflict detectors and a checkpoint: a 1 MiB Produce
costs sixty-four trips through it, and a Fetch response's small header
pieces each leave as a TLS record and a socket write of their own. Here
the same ``ssl.SSLObject`` over memory BIOs is driven directly:

- receiving, the socket is read in large pieces into the incoming BIO and
  every record there is decrypted straight into the buffer the frame
  decoder offers (the frame's own buffer once its size is known);
- sending, a connection's responses (bytes and the file regions of Fetch
  record data, read from the segment file with ``preadv``) are packed into
  one reusable staging buffer, encrypted in full 16 KiB records and written
  to the socket in writes of some hundred KiB.

Sendfile is still lost: the record data must pass through user space to be
encrypted (kernel TLS would keep it, but Python's ssl does not offer it).

Only the writer task sends; the reader may find output of its own in the
outgoing BIO (TLS 1.3 post-handshake messages) and sends it only while no
send is in progress, else the sender takes it along. The handshake is
driven the same way and, unlike trio's, sends TLS 1.3 session tickets at
once rather than with the first response.
"""

from __future__ import annotations

import os
import ssl

import trio

from pybroker.storage.segment import FileRegion, RegionGoneError

# Bytes read from the socket at once (several TLS records).
RECEIVE_SIZE = 256 * 1024
# Plaintext gathered before it is encrypted and written: many full records.
STAGING_SIZE = 256 * 1024
# Shared by every connection: each holds bytes only between two awaits (read
# from the socket and at once written into a BIO; filled and at once
# encrypted), and one thread runs them all.
_RECEIVED = bytearray(RECEIVE_SIZE)
_STAGING = bytearray(STAGING_SIZE)


class TlsStream(trio.abc.Stream):
    """The server side of TLS over ``transport``'s socket."""

    def __init__(self, transport: trio.SocketStream, context: ssl.SSLContext):
        self.transport_stream = transport
        self.fd = transport.socket.fileno()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._send_lock = trio.StrictFIFOLock()

    # -- what serve_tls and the handlers see ------------------------------------

    async def do_handshake(self) -> None:
        """Complete the handshake; BrokenResourceError if it fails or the peer leaves."""
        while True:
            try:
                self.ssl_object.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLError, ssl.CertificateError) as exc:
                # An alert for the client (a refused certificate) is in the BIO.
                await self._send_alert()
                raise trio.BrokenResourceError(exc) from exc
            async with self._send_lock:
                await self._flush()
            if not await self._receive():
                raise trio.BrokenResourceError("the peer closed the connection during the TLS handshake")
        async with self._send_lock:
            await self._flush()

    def getpeercert(self, binary_form: bool = False):
        return self.ssl_object.getpeercert(binary_form)

    def version(self) -> str | None:
        return self.ssl_object.version()

    def cipher(self):
        return self.ssl_object.cipher()

    # -- receiving ----------------------------------------------------------------

    def receive_into(self, buffer) -> int:
        """Decrypt into ``buffer`` what can be had without waiting: the
        number of bytes, 0 at the end of the stream, -1 when nothing is
        there yet (then ``wait_readable``)."""
        tls = self.ssl_object
        size = len(buffer)
        got = 0
        read = False  # the socket once at most: then the other connections' turn
        with memoryview(buffer) as view:
            while got < size:
                try:
                    n = tls.read(size - got, view[got:])
                    if not n:
                        return got  # the peer's close_notify: the end
                    got += n
                    continue
                except ssl.SSLWantReadError:
                    pass
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return got  # close_notify or an unannounced close: the end either way
                except ssl.SSLError as exc:
                    raise trio.BrokenResourceError(exc) from exc
                if read:
                    break
                read = True
                try:
                    n = os.readv(self.fd, (_RECEIVED,))
                except BlockingIOError:
                    break
                if not n:
                    return got
                self._incoming.write(memoryview(_RECEIVED)[:n])
        return got or -1

    async def wait_readable(self) -> None:
        if self._outgoing.pending and not self._send_lock.locked():
            # What reading made TLS say (a KeyUpdate's answer) goes now.
            async with self._send_lock:
                await self._flush()
        await trio.lowlevel.wait_readable(self.fd)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        buffer = bytearray(max_bytes or RECEIVE_SIZE)
        while (n := self.receive_into(buffer)) < 0:
            await self.wait_readable()
        return bytes(buffer[:n])

    async def _receive(self) -> int:
        """Wait for bytes from the socket and put them in the incoming BIO; 0 at its end."""
        while True:
            try:
                n = os.readv(self.fd, (_RECEIVED,))
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.fd)
                continue
            if n:
                self._incoming.write(memoryview(_RECEIVED)[:n])
            return n

    # -- sending ------------------------------------------------------------------

    async def send_all(self, data) -> None:
        await self.send_chunks([data])

    async def send_chunks(self, chunks: list) -> None:
        """Send buffers and file regions in order, encrypted."""
        async with self._send_lock:
            staging = _STAGING
            filled = 0
            for chunk in chunks:
                size = len(chunk)
                if type(chunk) is FileRegion:
                    done = 0
                    while done < size:
                        if filled == STAGING_SIZE:
                            await self._encrypt(staging)
                            filled = 0
                        want = min(size - done, STAGING_SIZE - filled)
                        with memoryview(staging) as view:
                            n = os.preadv(chunk.fileno(), (view[filled : filled + want],), chunk.position + done)
                        if n <= 0:
                            raise RegionGoneError(
                                f"segment file ends inside a region read from it at {chunk.position}"
                            )
                        filled += n
                        done += n
                elif filled + size <= STAGING_SIZE:
                    staging[filled : filled + size] = chunk
                    filled += size
                else:
                    # Large bytes: what is staged goes first, then they are
                    # encrypted where they are.
                    if filled:
                        await self._encrypt(memoryview(staging)[:filled])
                        filled = 0
                    await self._encrypt(chunk)
            if filled:
                await self._encrypt(memoryview(staging)[:filled])

    async def _encrypt(self, data) -> None:
        try:
            self.ssl_object.write(data)
        except ssl.SSLError as exc:
            raise trio.BrokenResourceError(exc) from exc
        await self._flush()

    async def _flush(self) -> None:
        """Write everything in the outgoing BIO to the socket (the send lock held)."""
        while self._outgoing.pending:
            with memoryview(self._outgoing.read()) as data:
                sent = 0
                while sent < len(data):
                    try:
                        sent += os.write(self.fd, data[sent:])
                    except BlockingIOError:
                        await trio.lowlevel.wait_writable(self.fd)

    async def _send_alert(self) -> None:
        if self._outgoing.pending:
            try:
                with trio.move_on_after(1):
                    async with self._send_lock:
                        await self._flush()
            except OSError:
                pass

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self.fd)

    async def aclose(self) -> None:
        await self.transport_stream.aclose()
