"""Cutting TCP proxies on loopback, all served by one thread (``Switchboard``):
how a chaos run partitions brokers without touching the host's network.

A ``Proxy`` listens on a port of its own and forwards each connection to a
backend port. Which connections are cut is the caller's rule
(``blocked(link)``), asked for every new connection and again on each
``refresh()``. A cut connection is a blackhole, as a network that drops
packets is: nothing is forwarded either way and nothing is closed or reset;
a connection made to a cut proxy is accepted and then left silent, never
refused, since a refused connection is what crash detection takes for a
dead process (docs/FAILOVER.md). Healing resumes forwarding, as TCP delivers
what it had buffered once a partition heals; a connection accepted during
the cut is forwarded from then on, unless its client gave up and closed it
meanwhile (such a connection never got through, and nothing of it arrives).

A proxy listens only while something listens on its backend port (checked
every ``TICK_S`` from ``/proc``, see ``procnet``): so a dead broker's
advertised address refuses connections within a tick, as its own port
would, and crash detection through the proxy works as without it.

Each connection to a proxy with ``classify`` set records ``owner``: which
of the processes ``pids()`` names holds the connecting socket (a peer
broker), or None (a client), so that the rule can cut brokers from each
other but not from clients.
"""

from __future__ import annotations

import collections
import errno
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from . import procnet

HOST = "127.0.0.1"
TICK_S = 0.02
CHUNK = 65536
BUFFER = 256 * 1024  # per direction; beyond it a side is not read (the sender's kernel buffers it)
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


@dataclass(eq=False)
class Proxy:
    """``port`` forwards to ``backend``; ``role`` and ``node`` are for the rule, ``name`` for errors."""

    name: str
    role: str
    node: int
    port: int
    backend: int
    classify: bool = False
    listener: socket.socket | None = None


@dataclass(eq=False)
class Link:
    """One accepted connection (``client``) and its connection to the backend (``server``)."""

    proxy: Proxy
    client: socket.socket
    owner: int | None
    server: socket.socket | None = None
    connecting: bool = False
    cut: bool = False
    up: bytearray = field(default_factory=bytearray)  # client -> server, not yet sent
    down: bytearray = field(default_factory=bytearray)  # server -> client, not yet sent
    client_eof: bool = False
    server_eof: bool = False
    server_shut: bool = False
    client_shut: bool = False
    masks: dict = field(default_factory=dict)  # socket -> events registered


class Switchboard:
    """The proxies and their connections, served by one daemon thread.

    ``blocked(link)`` decides whether a connection is cut; ``pids()`` gives
    {owner key: PID} for ``Link.owner``. Both run on the switchboard's
    thread; everything else calls in through ``call``, so the rule's state
    needs no lock as long as it is changed inside ``call`` too."""

    def __init__(self, blocked: Callable[[Link], bool], pids: Callable[[], Mapping[int, int]]):
        self.blocked, self.pids = blocked, pids
        self.proxies: list[Proxy] = []
        self.links: set[Link] = set()
        self.errors: list[str] = []
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, READ, self._woken)
        self._calls: collections.deque = collections.deque()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="chaos-switchboard", daemon=True)
        self._thread.start()

    # -- from other threads ---------------------------------------------------------------

    def call(self, fn: Callable, timeout: float = 10):
        """``fn()`` run on the switchboard's thread; its result (or its exception)."""
        done, box = threading.Event(), {}

        def task():
            try:
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box["error"] = exc
            done.set()

        self._calls.append(task)
        self._wake_w.send(b"x")
        if not done.wait(timeout):
            raise TimeoutError(f"the switchboard did not run {fn!r} within {timeout} s")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def add(self, proxy: Proxy) -> None:
        self.call(lambda: (self.proxies.append(proxy), self._mirror()))

    def refresh(self, change: Callable[[], object] = lambda: None) -> list[Link]:
        """``change()`` (of the rule's state), then the rule asked again for
        every connection, all on the switchboard's thread; the links cut now."""
        return self.call(lambda: (change(), self._refresh())[1])

    def close(self) -> None:
        """Every connection and listener closed, the thread ended."""
        if self._thread.is_alive():

            def stop():
                self._closing = True

            self.call(stop)
            self._thread.join(10)

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = 0.0
        try:
            while not self._closing:
                for key, mask in self._selector.select(max(0.0, next_tick - time.monotonic())):
                    try:
                        key.data(mask)
                    except Exception as exc:  # noqa: BLE001 - one connection's trouble must not stop the rest
                        self._error(f"{key.data!r}: {exc!r}")
                if time.monotonic() >= next_tick:
                    try:
                        self._mirror()
                    except Exception as exc:  # noqa: BLE001 - kept for the report; the proxies go on
                        self._error(f"listening as the backends do: {exc!r}")
                    next_tick = time.monotonic() + TICK_S
        finally:
            for link in list(self.links):
                self._close(link, reset=True)
            for proxy in self.proxies:
                self._unlisten(proxy)
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _error(self, message: str) -> None:
        # Once each: a port taken by someone else would say so every tick.
        if message not in self.errors and len(self.errors) < 100:
            self.errors.append(message)

    def _woken(self, mask: int) -> None:
        try:
            self._wake_r.recv(4096)
        except BlockingIOError:
            pass
        while self._calls:
            self._calls.popleft()()

    # -- listening as the backend does ----------------------------------------------------------

    def _mirror(self) -> None:
        try:
            listening = procnet.listening_ports()
        except OSError as exc:
            self._error(f"reading /proc/net/tcp: {exc!r}")
            return
        for proxy in self.proxies:
            if proxy.backend in listening and proxy.listener is None:
                self._listen(proxy)
            elif proxy.backend not in listening and proxy.listener is not None:
                self._unlisten(proxy)

    def _listen(self, proxy: Proxy) -> None:
        s = socket.socket()
        try:
            # Its own accepted connections may still hold the port: that is allowed to a listener.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((HOST, proxy.port))
            s.listen(128)
        except OSError as exc:
            s.close()
            self._error(f"{proxy.name}: cannot listen on {proxy.port}: {exc!r}")
            return
        s.setblocking(False)
        proxy.listener = s
        self._selector.register(s, READ, lambda mask: self._accept(proxy))

    def _unlisten(self, proxy: Proxy) -> None:
        if proxy.listener is not None:
            self._selector.unregister(proxy.listener)
            proxy.listener.close()  # connections still in its backlog get a reset, as a dead port's would
            proxy.listener = None

    # -- connections ----------------------------------------------------------------------------

    def _accept(self, proxy: Proxy) -> None:
        try:
            client, (_, port) = proxy.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        owner = procnet.owner(port, proxy.port, self.pids()) if proxy.classify else None
        link = Link(proxy, client, owner)
        self.links.add(link)
        link.cut = self.blocked(link)
        if not link.cut:
            self._connect(link)
        self._update(link)

    def _connect(self, link: Link) -> None:
        server = socket.socket()
        server.setblocking(False)
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = server.connect_ex((HOST, link.proxy.backend))
        if code not in (0, errno.EINPROGRESS):
            server.close()
            self._close(link, reset=True)  # the backend is gone: say so as it would have
            return
        link.server, link.connecting = server, code != 0

    def _refresh(self) -> list[Link]:
        for link in list(self.links):
            cut = self.blocked(link)
            if cut == link.cut:
                continue
            link.cut = cut
            if not cut and link.server is None:
                if _closed_by_peer(link.client):
                    self._close(link)
                    continue
                self._connect(link)
            if link in self.links:
                self._update(link)
        return [link for link in self.links if link.cut]

    def _update(self, link: Link) -> None:
        """Half-closes passed on, finished links closed, and the events each socket waits for."""
        if link not in self.links:
            return
        if not link.cut and link.server is not None and not link.connecting:
            if link.client_eof and not link.up and not link.server_shut:
                _shutdown(link.server)
                link.server_shut = True
            if link.server_eof and not link.down and not link.client_shut:
                _shutdown(link.client)
                link.client_shut = True
            if link.server_shut and link.client_shut:
                self._close(link)
                return
        want = {link.client: 0}
        if link.server is not None:
            want[link.server] = 0
        if not link.cut:
            if not link.client_eof and len(link.up) < BUFFER:
                want[link.client] |= READ
            if link.down:
                want[link.client] |= WRITE
            if link.server is not None:
                if link.connecting:
                    want[link.server] = WRITE
                else:
                    if not link.server_eof and len(link.down) < BUFFER:
                        want[link.server] |= READ
                    if link.up:
                        want[link.server] |= WRITE
        for sock, mask in want.items():
            before = link.masks.get(sock, 0)
            if mask == before:
                continue
            handler = self._on_client if sock is link.client else self._on_server
            if before == 0:
                self._selector.register(sock, mask, lambda m, link=link, h=handler: h(link, m))
            elif mask == 0:
                self._selector.unregister(sock)
            else:
                self._selector.modify(sock, mask, lambda m, link=link, h=handler: h(link, m))
            link.masks[sock] = mask

    def _on_client(self, link: Link, mask: int) -> None:
        if link not in self.links:  # closed by an earlier event of the same select
            return
        self._pump(link, mask, link.client, link.up, link.down, "client_eof")

    def _on_server(self, link: Link, mask: int) -> None:
        if link not in self.links:
            return
        if link.connecting:
            code = link.server.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._close(link, reset=True)
                return
            link.connecting = False
            self._update(link)
            return
        self._pump(link, mask, link.server, link.down, link.up, "server_eof")

    def _pump(self, link: Link, mask: int, sock: socket.socket, inbox: bytearray, outbox: bytearray, eof: str):
        """Read what ``sock`` sent into ``inbox``, write ``outbox`` to it."""
        try:
            if mask & READ:
                data = sock.recv(CHUNK)
                if data:
                    inbox += data
                else:
                    setattr(link, eof, True)
            if mask & WRITE and outbox:
                del outbox[: sock.send(outbox)]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # reset, or a broken pipe: the other side gets a reset too
            self._close(link, reset=True)
            return
        self._update(link)

    def _close(self, link: Link, reset: bool = False) -> None:
        self.links.discard(link)
        for sock in (link.client, link.server):
            if sock is None:
                continue
            if link.masks.get(sock):
                self._selector.unregister(sock)
            if reset:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
                except OSError:
                    pass
            sock.close()
        link.masks.clear()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the peer has closed (or reset) a connection we have not read from."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
