"""The leader lease (beyond Kafka; the cluster design's section 0).

ZooKeeper ends a session no earlier than its timeout T after it last heard
from the client, and only then may the controller give this broker's
leaderships to another. So an answer from ZooKeeper to a request sent at
time s proves that no other broker can lead what this one leads before
s + T. A leader serves only while ``now < s + fraction * T`` for the
latest such s (fraction 2/3 by default: a third of T is left for clocks
that run at slightly different rates and for the answer in flight).

A leader paused past its session (SIGSTOP, a stalled host) or cut off
from ZooKeeper therefore stops serving before anyone replaces it, and
whatever a client sent it meanwhile is refused, not acknowledged and
then lost. The lease is pure: time is a parameter (monotonic seconds).
"""

from __future__ import annotations

import math

DEFAULT_FRACTION = 2 / 3


class Lease:
    __slots__ = ("fraction", "renewed_at", "until")

    def __init__(self, fraction: float = DEFAULT_FRACTION):
        if not 0 < fraction < 1:
            raise ValueError("a lease must end before the session can")
        self.fraction = fraction
        self.until = -math.inf
        # When the request behind the current lease was sent.
        self.renewed_at = -math.inf

    def renew(self, sent_at: float, session_timeout_s: float) -> None:
        """ZooKeeper answered a request sent at ``sent_at`` in a session of
        ``session_timeout_s``."""
        until = sent_at + self.fraction * session_timeout_s
        if until > self.until:
            self.until, self.renewed_at = until, sent_at

    def revoke(self) -> None:
        """The session is gone (expired, or this broker's registration with it)."""
        self.until = self.renewed_at = -math.inf

    def valid(self, now: float) -> bool:
        return now < self.until
