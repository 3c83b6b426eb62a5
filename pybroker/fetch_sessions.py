"""Incremental fetch sessions (KIP-227).

A consumer may open a session (session id 0, epoch 0): the broker
remembers the partitions it fetches, and later requests (same id, next
epoch) list only what changed; responses carry only partitions with news
(records, a moved high watermark / last stable offset / log start offset,
or an error). Epoch -1 means "no session" (a plain full fetch) and closes a
session named by id. The cache is bounded; the least recently used session
is evicted when it is full, and that client gets FETCH_SESSION_ID_NOT_FOUND
on its next incremental request and starts over, as with Kafka.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError

INITIAL_EPOCH = 0
FINAL_EPOCH = -1
DEFAULT_MAX_SESSIONS = 1000  # Kafka's max.incremental.fetch.session.cache.slots


@dataclass(slots=True)
class SessionPartition:
    topic: str
    topic_id: uuid.UUID
    index: int
    fetch_offset: int
    max_bytes: int
    leader_epoch: int
    # What the client was last told; -1 means never.
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1

    def has_news(self, hw: int, lso: int, log_start: int) -> bool:
        return hw != self.high_watermark or lso != self.last_stable_offset or log_start != self.log_start_offset

    def remember(self, hw: int, lso: int, log_start: int) -> None:
        self.high_watermark, self.last_stable_offset, self.log_start_offset = hw, lso, log_start


class FetchSession:
    def __init__(self, session_id: int):
        self.id = session_id
        self.epoch = 1  # the epoch the client must send next
        self.partitions: OrderedDict[tuple[str, int], SessionPartition] = OrderedDict()


class FetchSessionCache:
    def __init__(self, max_sessions: int = DEFAULT_MAX_SESSIONS):
        self.max_sessions = max_sessions
        self.sessions: OrderedDict[int, FetchSession] = OrderedDict()
        self._ids = itertools.count(random.randrange(1, 1 << 30))

    def resolve(self, session_id: int, epoch: int) -> tuple[FetchSession | None, bool]:
        """(session, full) for a request: the session to use (None for a
        sessionless fetch) and whether the request is a full fetch."""
        if epoch == FINAL_EPOCH:
            self.sessions.pop(session_id, None)
            return None, True
        if epoch == INITIAL_EPOCH:
            self.sessions.pop(session_id, None)
            return self._create(), True
        session = self.sessions.get(session_id)
        if session is None:
            raise KafkaError(ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
        if epoch != session.epoch:
            raise KafkaError(ErrorCode.INVALID_FETCH_SESSION_EPOCH)
        self.sessions.move_to_end(session_id)
        return session, False

    def _create(self) -> FetchSession | None:
        if self.max_sessions <= 0:
            return None
        while len(self.sessions) >= self.max_sessions:
            self.sessions.popitem(last=False)
        session_id = next(self._ids) & 0x7FFFFFFF or next(self._ids)
        session = FetchSession(session_id)
        self.sessions[session_id] = session
        return session

    def forget_topic(self, topic: str) -> None:
        for session in self.sessions.values():
            for key in [k for k in session.partitions if k[0] == topic]:
                del session.partitions[key]
