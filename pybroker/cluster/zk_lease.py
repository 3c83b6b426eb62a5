"""Keeping the leader lease (replica/lease.py) with ZooKeeper's answers.

Every sixth of the session timeout the broker reads its own registration
znode and, when ZooKeeper answers that it exists and belongs to this
session, renews the lease from the time the read was sent. Reading the
registration rather than any znode also ends the lease when a controller
has declared this broker dead (crash detection deletes the registration of
a broker whose listener refuses connections): a broker that is alive after
all stops leading, and re-registers (``on_lost_registration``).

An expired session revokes the lease at once. A lapse (no answer before
the lease ended: ZooKeeper unreachable, this process paused or starved)
is logged once, and so is the lease coming back.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import trio

from pybroker.zk import ConnectionLossError, SessionExpiredError

from ..replica.lease import Lease
from . import znodes as zn

log = logging.getLogger("pybroker.cluster")

HEARTBEATS_PER_SESSION = 6


class LeaseKeeper:
    def __init__(self, zk, node_id: int, lease: Lease, *, clock: Callable[[], float] = time.monotonic):
        self.zk = zk
        self.node_id = node_id
        self.lease = lease
        self.clock = clock
        # Called (sync) when the registration is found gone or someone else's
        # while the session lives: the broker registers again.
        self.on_lost_registration: Callable[[], None] | None = None
        self._lapsed = False

    def _session_changed(self, state: str) -> None:
        if state == "expired":
            self.lease.revoke()

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Heartbeats until cancelled; ``started`` once the lease first holds."""
        self.zk.add_session_listener(self._session_changed)
        started = False
        try:
            while True:
                session_s = (self.zk.negotiated_timeout_ms or self.zk.session_timeout_ms) / 1000
                sent = self.clock()
                held = await self._heartbeat(sent)
                if held:
                    self.lease.renew(sent, session_s)
                    if self._lapsed:
                        log.warning("leader lease held again (ZooKeeper answers); leading what ZooKeeper says")
                        self._lapsed = False
                    if not started:
                        started = True
                        task_status.started()
                await trio.sleep(session_s / HEARTBEATS_PER_SESSION)
        finally:
            self.zk.remove_session_listener(self._session_changed)

    async def _heartbeat(self, sent: float) -> bool:
        """Whether ZooKeeper confirmed this broker's registration in its
        session, for a read sent at ``sent``; logs a lapse once."""
        left = self.lease.until - sent
        try:
            with trio.move_on_after(left if left > 0 else math.inf) as waited:
                stat = await self.zk.exists(zn.broker_path(self.node_id))
        except (ConnectionLossError, SessionExpiredError):
            self._lapse("the connection to ZooKeeper was lost")
            return False
        if waited.cancelled_caught:
            self._lapse("no answer from ZooKeeper within the lease")
            return False
        return self._confirms(stat)

    def _confirms(self, stat) -> bool:
        if stat is not None and stat.ephemeralOwner == self.zk.session_id:
            return True
        if self.zk.connected:
            self.lease.revoke()
            self._lapse(f"{zn.broker_path(self.node_id)} is not this session's")
            if self.on_lost_registration is not None:
                self.on_lost_registration()
        return False

    def _lapse(self, why: str) -> None:
        if not self._lapsed:
            self._lapsed = True
            log.error("leader lease lapsed (%s): leading nothing until ZooKeeper answers again", why)
