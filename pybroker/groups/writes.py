"""The group coordinator's writes to ``__consumer_offsets``, completed
when committed.

Every write is one record batch (magic 2, CreateTime, uncompressed) to the
group's partition, so a change is in the log whole or not at all. It is
appended at once, through the replica layer with acks=-1; its ``on_done``
callback runs once the batch is committed or has failed — at once, before
``write`` returns, when the append itself fails; otherwise from the
committer task (``run``), which waits for everything appended so far with
one ``until_committed`` and completes the writes in the order they were
appended. The wait is bounded by ``offsets.commit.timeout.ms`` (Kafka's
bound on the coordinator's appends): a write not committed by then fails
REQUEST_TIMED_OUT, which the coordinator maps as Kafka does. The
callbacks are where the state machines apply what was written and answer
the requests that wrote it; they must not await.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import EncodeError, KafkaError
from pybroker.protocol.record_batch import RecordBatch
from pybroker.protocol.records import NewRecord, build_batch

from . import OFFSETS_TOPIC
from .replicas import OFFSETS_ACKS, Appended, Origin, Replicas

log = logging.getLogger("pybroker.groups")

# on_done(storage error or NONE, the append or None when it never happened)
OnDone = Callable[[ErrorCode, "Appended | None"], None]


class Completion:
    """One result, set once, maybe before anyone waits for it; ``then``
    callbacks run when it is set (at once if it already is)."""

    __slots__ = ("_then", "event", "result")

    def __init__(self):
        self.event = trio.Event()
        self.result = None
        self._then: list[Callable] = []

    def __call__(self, result) -> None:
        self.result = result
        self.event.set()
        then, self._then = self._then, []
        for fn in then:
            fn(result)

    def then(self, fn: Callable) -> None:
        if self.done:
            fn(self.result)
        else:
            self._then.append(fn)

    @property
    def done(self) -> bool:
        return self.event.is_set()

    async def wait(self):
        await self.event.wait()
        return self.result


class GroupWriter:
    def __init__(
        self, replicas: Replicas, partition_of: Callable[[str], int], timeout_ms: int = 5000, topic: str = OFFSETS_TOPIC
    ):
        self.replicas = replicas
        self.topic = topic  # the transaction coordinator writes __transaction_state the same way
        self.timeout_ms = timeout_ms
        self._partition_of = partition_of  # group id -> its partition of the offsets topic
        self._queue: list[tuple[Appended, Completion, OnDone | None]] = []
        self._wake = trio.Event()

    def write(
        self,
        group_id: str,
        records: list[NewRecord],
        now: int,
        on_done: OnDone | None = None,
        producer: tuple[int, int] | None = None,
    ) -> Completion:
        """Append ``records`` as one batch; the completion's result is the
        storage-level error code (not yet mapped to what the coordinator
        answers), NONE once committed. ``producer`` (id, epoch) makes it a
        transactional batch of that producer, without a sequence (a
        TxnOffsetCommit, as Kafka writes it)."""
        done = Completion()
        stamped = [r._replace(timestamp=now) for r in records]
        try:
            index = self._partition_of(group_id)
            txn = {} if producer is None else {
                "producer_id": producer[0], "producer_epoch": producer[1], "is_transactional": True
            }
            # offsets patched in place
            batch = RecordBatch(bytearray(build_batch(stamped, base_timestamp=now, **txn)))
            appended = self.replicas.append(self.topic, index, batch, now=now, acks=OFFSETS_ACKS,
                                            origin=Origin.COORDINATOR)
        except EncodeError as exc:
            log.warning("cannot build a batch for %r: %s", group_id, exc)
            _finish(done, on_done, ErrorCode.MESSAGE_TOO_LARGE, None)
        except KafkaError as exc:
            log.warning("writing %r to %s failed: %s", group_id, self.topic, exc)
            _finish(done, on_done, ErrorCode(exc.code), None)
        else:
            self._queue.append((appended, done, on_done))
            self._wake.set()
        return done

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await self.settle()

    async def settle(self) -> None:
        """Complete every write appended so far (and any appended by their
        callbacks)."""
        while self._queue:
            writes, self._queue = self._queue, []
            try:
                failed = await self.replicas.until_committed([a for a, _, _ in writes], self.timeout_ms)
            except Exception:
                log.exception("waiting for the group coordinator's writes failed")
                failed = {a: KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR) for a, _, _ in writes}
            for appended, done, on_done in writes:
                error = failed.get(appended)
                _finish(done, on_done, ErrorCode.NONE if error is None else ErrorCode(error.code), appended)


def _finish(done: Completion, on_done: OnDone | None, error: ErrorCode, appended: Appended | None) -> None:
    try:
        if on_done is not None:
            on_done(error, appended)
    except Exception:  # a bug in a state machine: it must not stop the other writes
        log.exception("completing a write of the group coordinator failed")
    finally:
        done(error)
