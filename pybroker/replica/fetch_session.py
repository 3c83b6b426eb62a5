"""A follower's side of an incremental fetch session (KIP-227), as Kafka's
FetchSessionHandler keeps it for its replica fetchers.

A full Fetch (session id 0, or the old id to close it, at epoch 0) lists
every partition and asks the leader for a session; while one is open each
request (the session's id, its next epoch) lists only the partitions
whose fetch position changed since they were last sent, and names those
no longer wanted as forgotten, and the leader's answer carries only the
partitions with news (records, a moved high watermark or log start, an
error, a divergence). Without sessions every round of a leader's
followers re-sent, re-read and re-answered every partition they share,
busy or idle — the bulk of a replicating broker's work once the idle
partitions (``__consumer_offsets`` has 50) outnumber the busy ones.

Pure data: ``request`` says what to send, ``answered`` and ``failed``
move the session on or reset it.
"""

from __future__ import annotations

from typing import NamedTuple

from pybroker.protocol.error_codes import ErrorCode

INITIAL_EPOCH = 0
NO_SESSION = 0
_STALE = object()  # equal to no position: the partition is sent again


class SessionRequest(NamedTuple):
    session_id: int
    epoch: int
    full: bool
    send: list  # keys whose position goes in the request
    forgotten: list  # keys the leader is to drop from the session


class FollowerSession:
    def __init__(self):
        self.id = NO_SESSION
        self.epoch = INITIAL_EPOCH
        # What the leader's session holds for each partition: the position
        # last sent (any value that compares equal while nothing the
        # Fetch says of the partition changed). Kept while a session is open.
        self._held: dict = {}
        self._pending: tuple[dict, bool] | None = None

    def request(self, wanted: dict) -> SessionRequest:
        """What to send for ``wanted`` ({key: position}, every partition
        to fetch this round); ``answered`` or ``failed`` must follow."""
        full = self.epoch == INITIAL_EPOCH
        if full:
            send = list(wanted)
            forgotten: list = []
        else:
            held = self._held
            send = [k for k, pos in wanted.items() if held.get(k) != pos]
            forgotten = [k for k in held if k not in wanted]
        self._pending = (dict(wanted), full)
        return SessionRequest(self.id, self.epoch, full, send, forgotten)

    def answered(self, error_code: int, session_id: int) -> bool:
        """The leader's answer to the last request: True if its partitions
        stand (the session moved on, or a sessionless full fetch), False
        when the session was refused and the next request starts over."""
        wanted, full = self._pending
        self._pending = None
        if error_code:
            # Kafka's handler: an unknown session starts afresh; any other
            # refusal (a wrong epoch) closes the one it has and asks again.
            if error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND:
                self.id = NO_SESSION
            self.epoch = INITIAL_EPOCH
            self._held = {}
            return False
        if session_id == NO_SESSION:
            # No session (the leader's cache is full, or it closed ours):
            # every request stays a full one.
            self.id, self.epoch, self._held = NO_SESSION, INITIAL_EPOCH, {}
        elif full or session_id == self.id:
            self.id = session_id
            self.epoch = 1 if full else self.epoch + 1
            self._held = wanted
        else:
            self.failed()
            return False
        return True

    def resend(self, key) -> None:
        """Name ``key`` in full the next time it is wanted, changed or not:
        its last answer was refused (an error, a back-off), and the leader
        may have answered it without keeping it (a topic it did not know
        yet). While unwanted it is still forgotten as usual."""
        if key in self._held:
            self._held[key] = _STALE

    def failed(self) -> None:
        """The request got no answer (the connection broke): the next one
        closes this session and opens another."""
        self._pending = None
        self.epoch = INITIAL_EPOCH
        self._held = {}
