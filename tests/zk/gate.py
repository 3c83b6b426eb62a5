"""A TCP proxy on 127.0.0.1 that a test can shut like a gate: ``cut()``
closes every connection through it and refuses new ones until ``heal()``.
Put between a client and ZooKeeper, it loses the client's connection while
its session lives on in ZooKeeper. ``pause()`` holds the bytes instead,
connections kept open, until ``resume()``."""

from __future__ import annotations

import socket
import threading

from ..broker.cutting_proxy import close_socket


class Gate:
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._open = True
        self._closed = False
        self.accepted = 0
        self._flowing = threading.Event()
        self._flowing.set()
        self._thread = threading.Thread(target=self._accept, name="gate", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut(self) -> None:
        with self._lock:
            self._open = False
            socks, self._socks = self._socks, set()
        for s in socks:
            close_socket(s)

    def heal(self) -> None:
        with self._lock:
            self._open = True

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self.resume()
        self.cut()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.listener.close()
        self._thread.join(10)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                close_socket(client)
                continue
            with self._lock:
                admitted = self._open
                if admitted:
                    self.accepted += 1
                    self._socks.update((client, upstream))
            if not admitted:
                close_socket(client)
                close_socket(upstream)
                continue
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            close_socket(src)
            close_socket(dst)
