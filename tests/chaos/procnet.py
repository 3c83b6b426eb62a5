"""What the kernel says about TCP sockets on this machine (Linux ``/proc``),
for the cutting proxies: which ports something listens on, and which
process holds the other end of a connection a proxy accepted.

No connection is made to find out: probing a broker's port would be seen by
it (a connection accepted, then closed), and would itself be traffic the
fault under test must not see.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping

TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
LISTEN = "0A"  # the kernel's TCP_LISTEN, as /proc/net/tcp writes states


def _rows(tables: Iterable[str] = TABLES) -> Iterator[tuple[int, int, str, int]]:
    """(local port, remote port, state, inode) of every TCP socket of this network namespace."""
    for table in tables:
        try:
            with open(table, encoding="ascii") as f:
                lines = f.read().splitlines()[1:]
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            yield int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16), state, int(inode)


def listening_ports() -> set[int]:
    """Every port some socket listens on (any address: everything here is on loopback)."""
    return {local for local, _, state, _ in _rows() if state == LISTEN}


def socket_inode(local_port: int, remote_port: int) -> int | None:
    """The inode of the socket whose own port is ``local_port`` and whose peer's is
    ``remote_port``; None once it is gone (or it is in TIME_WAIT, inode 0)."""
    for local, remote, state, inode in _rows():
        if local == local_port and remote == remote_port and state != LISTEN and inode:
            return inode
    return None


def owner(local_port: int, remote_port: int, pids: Mapping[int, int]) -> int | None:
    """Which of ``pids`` ({key: PID}) holds the socket (``local_port`` ->
    ``remote_port``): its key, or None for any other process (a client) and
    for a socket already closed."""
    inode = socket_inode(local_port, remote_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for key, pid in pids.items():
        fd_dir = f"/proc/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:  # exited meanwhile
            continue
        for name in names:
            try:
                if os.readlink(f"{fd_dir}/{name}") == target:
                    return key
            except OSError:  # closed meanwhile
                continue
    return None
