"""The cutting proxy against an echo server on loopback: a cut is silence,
never a refusal or a reset; a heal delivers what was held; the proxy
refuses once its backend listens no more; a peer broker's connection is
told from a client's by the process holding it. A second or two."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading

import pytest

from pybroker.local_cluster import wait_for

from .network import Network
from .proxy import Proxy, Switchboard


class Echo:
    """A listening socket whose connections get back what they send."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        with conn, contextlib.suppress(OSError):  # the proxy resets what it still holds as it closes
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self):
        self.listener.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(port: int) -> socket.socket:
    return wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=2), 5, "the proxy to listen")


def _silent(sock: socket.socket, wait: float = 0.3) -> bool:
    sock.settimeout(wait)
    try:
        sock.recv(100)
    except TimeoutError:
        return True
    return False


@pytest.fixture
def echo():
    server = Echo()
    yield server
    server.close()


def test_a_cut_is_silence_and_a_heal_delivers_what_was_held(echo):
    cut = set()
    board = Switchboard(lambda link: bool(cut), dict)
    try:
        port = _free_port()
        board.add(Proxy("echo", "test", 1, port, echo.port))
        before = _connect(port)
        before.sendall(b"one")
        assert before.recv(100) == b"one"

        board.refresh(lambda: cut.add(1))
        before.sendall(b"two")
        assert _silent(before)
        during = _connect(port)  # accepted, not refused
        during.sendall(b"three")
        assert _silent(during)

        assert len(board.refresh(cut.clear)) == 0
        before.settimeout(2)
        during.settimeout(2)
        assert before.recv(100) == b"two"
        assert during.recv(100) == b"three"
        before.close()
        during.close()
    finally:
        board.close()


def test_refuses_once_the_backend_listens_no_more(echo):
    board = Switchboard(lambda link: False, dict)
    try:
        port = _free_port()
        board.add(Proxy("echo", "test", 1, port, echo.port))
        _connect(port).close()
        echo.close()

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_for(refused, 2, "the proxy to refuse")
    finally:
        board.close()


def test_peer_connections_are_told_from_clients(echo):
    """A connection held by a broker's process is that broker's; the cut of
    broker 1 from its peers leaves clients alone."""
    pids: dict[int, int] = {}
    network = Network(lambda: pids)
    peer = None
    try:
        props = network.add_broker(1, echo.port, _free_port(), "/chroot")
        port = int(props["advertised.listeners"].rsplit(":", 1)[1])
        client = _connect(port)
        code = (
            "import socket, sys, time; sys.stdin.readline(); "
            f"s = socket.create_connection(('127.0.0.1', {port})); print('ok', flush=True); time.sleep(30)"
        )
        peer = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        pids[2] = peer.pid  # "broker 2"
        peer.stdin.write(b"go\n")
        peer.stdin.flush()
        assert peer.stdout.readline().strip() == b"ok"
        wait_for(lambda: len(network.board.call(lambda: list(network.board.links))) == 2, 2, "two connections")
        owners = network.board.call(lambda: sorted(str(link.owner) for link in network.board.links))
        assert owners == ["2", "None"]
        assert network.cut("peers", 1) == {"connections_cut": 1, "peer_connections_cut": 1}
        client.sendall(b"still")
        client.settimeout(2)
        assert client.recv(100) == b"still"
        assert network.heal("peers", 1) == {"connections_still_cut": 0}
    finally:
        if peer is not None:
            peer.kill()
            peer.wait()
        network.close()
