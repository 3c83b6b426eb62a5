"""The chaos cluster's network, and the two partitions it can make.

Every broker gets two cutting proxies (``proxy``): one in front of
ZooKeeper, which is its ``zookeeper.connect``, and one in front of its
listener, which is its ``advertised.listeners`` (it still binds its own
port, where the harness bootstraps from). Brokers find each other through
the advertised addresses (Metadata, their ZooKeeper registrations):
followers fetch, the controller probes every broker and every broker
probes the controller through them, as clients do after bootstrapping.

* ``cut("zookeeper", b)``: b's ZooKeeper proxy blackholes everything; b
  still talks to clients and to the other brokers.
* ``cut("peers", b)``: every connection between b and another broker, in
  either direction, is blackholed; b keeps ZooKeeper and its clients. A
  connection to b's listener proxy is a peer's when a peer broker's process
  holds the connecting socket; b's own connections to the others go through
  their proxies and are told apart the same way.

Nothing is reset or refused by a cut (see ``proxy``). The host's network
is left alone: everything stays on 127.0.0.1.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

from pybroker.local_cluster import PORT_RANGE, port_is_free

from .proxy import Link, Proxy, Switchboard

ZOOKEEPER, PEERS = "zookeeper", "peers"
CUTS = (ZOOKEEPER, PEERS)


class Network:
    """The proxies of a cluster's brokers; ``pids()`` gives {node id: PID} of the brokers."""

    def __init__(self, pids: Callable[[], Mapping[int, int]]):
        self.cuts: set[tuple[str, int]] = set()  # (kind, node id); read and changed on the switchboard's thread
        self.board = Switchboard(self._blocked, pids)
        self.taken: set[int] = set()  # ports handed out, though nothing may listen there yet
        # Replaced, never changed in place: other threads read it.
        self.cut_from_zookeeper: frozenset[int] = frozenset()

    @property
    def errors(self) -> list[str]:
        return self.board.errors

    def add_broker(self, node: int, port: int, zookeeper_port: int, chroot: str, reserved=()) -> dict[str, str]:
        """Proxies for broker ``node`` (listening on ``port``); the properties
        that send it and everyone else through them. The proxies' ports are
        free now and none of ``reserved`` (the brokers' ports, not bound yet)."""
        self.taken.update((port, *reserved))
        zk_port, listener_port = self._free_port(), self._free_port()
        self.board.add(Proxy(f"zookeeper for broker {node}", ZOOKEEPER, node, zk_port, zookeeper_port))
        self.board.add(Proxy(f"broker {node}", "broker", node, listener_port, port, classify=True))
        return {
            "zookeeper.connect": f"127.0.0.1:{zk_port}{chroot}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{listener_port}",
        }

    def cut(self, kind: str, node: int) -> dict:
        """Cut ``node`` off (``kind``: zookeeper or peers); what was cut at once."""
        if kind not in CUTS:
            raise ValueError(f"unknown cut {kind!r}; known: {', '.join(CUTS)}")
        cut = self.board.refresh(lambda: self._change(lambda: self.cuts.add((kind, node))))
        return {"connections_cut": len(cut), "peer_connections_cut": sum(1 for link in cut if link.owner is not None)}

    def heal(self, kind: str, node: int) -> dict:
        """The cut healed; the connections still cut by another cut, if any."""
        still = self.board.refresh(lambda: self._change(lambda: self.cuts.discard((kind, node))))
        return {"connections_still_cut": len(still)}

    def heal_all(self) -> None:
        self.board.refresh(lambda: self._change(self.cuts.clear))

    def _change(self, change: Callable[[], object]) -> None:
        change()
        self.cut_from_zookeeper = frozenset(node for kind, node in self.cuts if kind == ZOOKEEPER)

    def close(self) -> None:
        self.board.close()

    def _free_port(self) -> int:
        while True:
            port = random.randrange(*PORT_RANGE)
            if port not in self.taken and port_is_free(port):
                self.taken.add(port)
                return port

    def _blocked(self, link: Link) -> bool:
        proxy = link.proxy
        if proxy.role == ZOOKEEPER:
            return (ZOOKEEPER, proxy.node) in self.cuts
        for kind, node in self.cuts:
            if kind != PEERS or link.owner is None:
                continue
            # Into the cut broker from a peer, or out of it into a peer.
            if (proxy.node == node) != (link.owner == node):
                return True
        return False
