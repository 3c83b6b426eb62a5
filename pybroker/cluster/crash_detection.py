"""Crash detection faster than the ZooKeeper session (beyond Kafka).

A broker killed with kill -9 keeps its ZooKeeper session, and with it its
registration and leaderships, until the session times out; clients on
short retry budgets (KafkaJS: about 4.4 s) give up before that. But the
kernel closes a dead process's sockets at once: connections to it end,
and its listening port refuses new ones. A refused connection means that
nothing listens there; a broker binds its listener before it registers and
closes it only when it stops, so a registered broker whose listener
refuses connections for a while has no process serving it.

``Probes`` keeps one idle TCP connection to each watched broker's
listener. When it ends (the peer closed it or reset it) or cannot be
made, the probe reconnects every ``RETRY_S``; connections refused for
``CONFIRM_S`` in a row, with no other outcome in between, report the broker
(``report(key)``) and end that probe. Anything else — a connection made, a
timeout (a paused process, a network partition: the kernel of a stopped
process still accepts, a partition drops packets) — starts the count
again, so such brokers are left to the session timeout and the leader lease.

The controller probes every registered broker and, on a report, deletes
that broker's registration (it handles it as an expired session); every
other broker probes the controller and, on a report, deletes
``/controller`` so that a live broker takes over at once. ``RefusalStreak``
is the pure part: time is a parameter.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Hashable
from typing import NamedTuple

import trio

log = logging.getLogger("pybroker.controller")

RETRY_S = 0.05
CONFIRM_S = 0.25
CONNECT_TIMEOUT_S = 5.0


class RefusalStreak:
    """Refused connection attempts in a row: confirmed once they span ``confirm_s``."""

    __slots__ = ("confirm_s", "since")

    def __init__(self, confirm_s: float = CONFIRM_S):
        self.confirm_s = confirm_s
        self.since = math.inf

    def refused(self, now: float) -> bool:
        if self.since == math.inf:
            self.since = now
        return now - self.since >= self.confirm_s

    def reset(self) -> None:
        self.since = math.inf


def _refused(exc: BaseException) -> bool:
    """Whether every address of the listener refused the connection."""
    if isinstance(exc, ConnectionRefusedError):
        return True
    # trio.open_tcp_stream raises an OSError caused by a group of every attempt's failure.
    attempts = getattr(exc.__cause__, "exceptions", None)
    return bool(attempts) and all(isinstance(a, ConnectionRefusedError) for a in attempts)


class Target(NamedTuple):
    """What is probed: a registered broker (``epoch`` its czxid) or the
    controller (``epoch`` the session that holds /controller)."""

    kind: str  # "broker" or "controller"
    node_id: int
    epoch: int

    def __str__(self) -> str:
        return f"{self.kind} {self.node_id}"


class Probes:
    def __init__(self, report: Callable[[Hashable], None], *, clock: Callable[[], float] = time.monotonic):
        self._report = report
        self._clock = clock
        self._nursery: trio.Nursery | None = None
        # key -> (host, port, cancel scope of its probe)
        self._probes: dict[Hashable, tuple[str, int, trio.CancelScope]] = {}

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._probes.clear()

    def watch(self, targets: dict[Hashable, tuple[str, int]]) -> None:
        """Probe exactly these (key: (host, port)); a key whose address
        changed is probed afresh, one no longer named stops."""
        if self._nursery is None:
            return
        for key in list(self._probes):
            host, port, scope = self._probes[key]
            if targets.get(key) != (host, port):
                scope.cancel()
                del self._probes[key]
        for key, (host, port) in targets.items():
            if key not in self._probes:
                scope = trio.CancelScope()
                self._probes[key] = (host, port, scope)
                self._nursery.start_soon(self._probe, key, host, port, scope)

    def stop(self) -> None:
        self.watch({})

    async def _probe(self, key, host: str, port: int, scope: trio.CancelScope) -> None:
        streak = RefusalStreak()
        with scope:
            while True:
                try:
                    with trio.fail_after(CONNECT_TIMEOUT_S):
                        stream = await trio.open_tcp_stream(host, port)
                except trio.TooSlowError:
                    streak.reset()
                    continue
                except OSError as exc:
                    if not _refused(exc):
                        streak.reset()
                    elif streak.refused(self._clock()):
                        log.warning(
                            "%s refuses connections at %s:%d for %.0f ms: taking its process for dead",
                            key,
                            host,
                            port,
                            (self._clock() - streak.since) * 1000,
                        )
                        self._probes.pop(key, None)
                        self._report(key)
                        return
                    await trio.sleep(RETRY_S)
                    continue
                streak.reset()
                opened = self._clock()
                await _until_closed(stream)
                if self._clock() - opened < RETRY_S:
                    await trio.sleep(RETRY_S)  # a peer closing at once: no busy loop


async def _until_closed(stream: trio.SocketStream) -> None:
    """Returns when the peer closes or resets the connection (nothing is ever sent on it)."""
    try:
        while await stream.receive_some(4096):
            pass
    except (trio.BrokenResourceError, OSError):
        pass
    finally:
        await trio.aclose_forcefully(stream)
