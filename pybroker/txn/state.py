"""A transactional id's state and the coordinator's rules for changing it,
as data: every operation takes the current state and the time and returns
an error or the state to write (a ``Txn`` copy); the coordinator applies
that state only once it is committed to ``__transaction_state``, and
meanwhile the id has a transition pending, during which other operations
answer CONCURRENT_TRANSACTIONS.

The states and their legal predecessors are Kafka's
(TransactionMetadata.scala); the checks and their order follow Kafka 3.x's
TransactionCoordinator so clients see the same errors:

* InitProducerId bumps the epoch of an idle id (a new producer id when
  the epoch is exhausted), fences an open transaction by bumping the epoch
  in memory (PrepareEpochFence) and aborting it under the new epoch while
  the caller is told CONCURRENT_TRANSACTIONS, and answers
  CONCURRENT_TRANSACTIONS while a commit or abort is being completed;
* AddPartitionsToTxn / AddOffsetsToTxn move the id to Ongoing with the
  partitions added (no write when they are all in already);
* EndTxn writes PrepareCommit / PrepareAbort; once every partition has
  its marker, the coordinator writes CompleteCommit / CompleteAbort
  (``completed``); a retried EndTxn of a finished transaction succeeds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from pybroker.protocol.error_codes import ErrorCode

NO_PRODUCER_ID = -1
NO_EPOCH = -1
MAX_EPOCH = 32767


class TxnState(enum.IntEnum):
    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7


S = TxnState
VALID_PREVIOUS = {
    S.EMPTY: {S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT},
    S.ONGOING: {S.ONGOING, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT},
    S.PREPARE_COMMIT: {S.ONGOING},
    S.PREPARE_ABORT: {S.ONGOING, S.PREPARE_EPOCH_FENCE},
    S.COMPLETE_COMMIT: {S.PREPARE_COMMIT},
    S.COMPLETE_ABORT: {S.PREPARE_ABORT},
    S.DEAD: {S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT},
    S.PREPARE_EPOCH_FENCE: {S.ONGOING},
}
IDLE = (S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT)
PREPARING = (S.PREPARE_COMMIT, S.PREPARE_ABORT)

TopicPartition = tuple[str, int]


def epoch_exhausted(epoch: int) -> bool:
    """Kafka keeps the last epoch for fencing: one bump must stay possible."""
    return epoch >= MAX_EPOCH - 1


@dataclass
class Txn:
    txn_id: str
    producer_id: int
    last_producer_id: int
    epoch: int
    last_epoch: int
    timeout_ms: int
    state: TxnState
    partitions: frozenset[TopicPartition]
    start_ms: int
    update_ms: int
    # The state being written (None: none); a fence is in memory only.
    pending: TxnState | None = field(default=None, compare=False)

    def transit(self, state: TxnState, now: int, **changes) -> Txn:
        """The state to write next, marking this one as changing to it."""
        if self.state not in VALID_PREVIOUS[state]:
            raise IllegalTransition(f"{self.txn_id}: {self.state.name} cannot become {state.name}")
        self.pending = state
        return replace(self, state=state, update_ms=now, pending=None, **changes)

    def apply(self, written: Txn) -> None:
        """The transition ``written`` is committed: become it."""
        for name in ("producer_id", "last_producer_id", "epoch", "last_epoch", "timeout_ms", "state",
                     "partitions", "start_ms", "update_ms"):
            setattr(self, name, getattr(written, name))
        self.pending = None

    def abandon(self) -> None:
        """The write failed: the state stays what it was."""
        self.pending = None


class IllegalTransition(Exception):
    """A bug: the rules asked for a transition Kafka does not allow."""


@dataclass(frozen=True)
class Decision:
    """What an operation comes to: an error, or a state to write (or
    neither: nothing to change, answer at once). ``fence``: InitProducerId
    found an open transaction, which the coordinator must abort (``fence``
    then ``end_txn``)."""

    error: ErrorCode = ErrorCode.NONE
    write: Txn | None = None
    fence: bool = False


def new_txn(txn_id: str, producer_id: int, timeout_ms: int, now: int) -> Txn:
    return Txn(txn_id, producer_id, NO_PRODUCER_ID, NO_EPOCH, NO_EPOCH, timeout_ms, S.EMPTY, frozenset(), -1, now)


def init_producer_id(
    txn: Txn, timeout_ms: int, expected_pid: int, expected_epoch: int, new_pid, now: int
) -> Decision:
    """InitProducerId for an existing id. ``expected_pid`` / ``expected_epoch``
    are the producer's own (KIP-360; -1 when it has none); ``new_pid()``
    gives a fresh producer id when the epoch is exhausted."""
    if txn.pending is not None:
        return Decision(ErrorCode.CONCURRENT_TRANSACTIONS)
    expected = expected_pid != NO_PRODUCER_ID
    if expected and not (
        txn.epoch == NO_EPOCH
        or expected_pid == txn.producer_id
        or (expected_pid == txn.last_producer_id and epoch_exhausted(expected_epoch))
    ):
        return Decision(ErrorCode.PRODUCER_FENCED)
    if txn.state in PREPARING:
        return Decision(ErrorCode.CONCURRENT_TRANSACTIONS)
    if txn.state == S.ONGOING:
        # The open transaction is aborted under a bumped epoch (``fence``),
        # never returned: the caller retries once the abort is complete.
        return Decision(ErrorCode.CONCURRENT_TRANSACTIONS, fence=True)
    if txn.state not in IDLE:
        return Decision(ErrorCode.CONCURRENT_TRANSACTIONS)
    if epoch_exhausted(txn.epoch):
        last_epoch = txn.epoch if expected else NO_EPOCH
        return Decision(write=txn.transit(
            S.EMPTY, now, producer_id=new_pid(), last_producer_id=txn.producer_id, epoch=0, last_epoch=last_epoch,
            timeout_ms=timeout_ms, partitions=frozenset(), start_ms=-1,
        ))
    if not expected:
        epoch, last_epoch = txn.epoch + 1, NO_EPOCH
    elif txn.epoch == NO_EPOCH or expected_epoch == txn.epoch:
        epoch, last_epoch = txn.epoch + 1, txn.epoch
    elif expected_epoch == txn.last_epoch:
        epoch, last_epoch = txn.epoch, txn.last_epoch  # a retry of a bump already made
    else:
        return Decision(ErrorCode.PRODUCER_FENCED)
    return Decision(write=txn.transit(
        S.EMPTY, now, epoch=epoch, last_epoch=last_epoch, timeout_ms=timeout_ms, partitions=frozenset(), start_ms=-1
    ))


def check_producer(txn: Txn | None, producer_id: int, epoch: int) -> ErrorCode:
    """The checks every request of a transaction starts with."""
    if txn is None or txn.producer_id != producer_id:
        return ErrorCode.INVALID_PRODUCER_ID_MAPPING
    if txn.epoch != epoch:
        return ErrorCode.PRODUCER_FENCED
    if txn.pending is not None or txn.state in PREPARING:
        return ErrorCode.CONCURRENT_TRANSACTIONS
    return ErrorCode.NONE


def add_partitions(txn: Txn | None, producer_id: int, epoch: int, partitions, now: int) -> Decision:
    error = check_producer(txn, producer_id, epoch)
    if error:
        return Decision(error)
    added = frozenset(partitions)
    if txn.state == S.ONGOING and added <= txn.partitions:
        return Decision()
    if txn.state not in VALID_PREVIOUS[S.ONGOING]:
        return Decision(ErrorCode.INVALID_TXN_STATE)
    start = now if txn.state in IDLE else txn.start_ms
    return Decision(write=txn.transit(S.ONGOING, now, partitions=txn.partitions | added, start_ms=start))


def verify_partitions(txn: Txn | None, producer_id: int, epoch: int, partitions) -> dict[TopicPartition, ErrorCode]:
    """KIP-890's verify-only AddPartitionsToTxn: whether each partition is
    already in the producer's open transaction (INVALID_TXN_STATE if not:
    a batch for it would start a transaction its coordinator does not know)."""
    error = ErrorCode.NONE
    if txn is None or txn.producer_id != producer_id:
        error = ErrorCode.INVALID_PRODUCER_ID_MAPPING
    elif txn.epoch != epoch:
        error = ErrorCode.PRODUCER_FENCED
    out = {}
    for tp in partitions:
        if error:
            out[tp] = error
        else:
            ok = txn.state == S.ONGOING and tp in txn.partitions
            out[tp] = ErrorCode.NONE if ok else ErrorCode.INVALID_TXN_STATE
    return out


def end_txn(txn: Txn | None, producer_id: int, epoch: int, commit: bool, now: int, from_client: bool = True) -> Decision:
    """EndTxn from the producer, or (``from_client`` False) the coordinator's
    own abort of a fenced or timed-out transaction."""
    if txn is None or txn.producer_id != producer_id:
        return Decision(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
    if (from_client and epoch != txn.epoch) or epoch < txn.epoch:
        return Decision(ErrorCode.PRODUCER_FENCED)
    fencing = txn.pending == S.PREPARE_EPOCH_FENCE
    if txn.pending is not None and not fencing:
        return Decision(ErrorCode.CONCURRENT_TRANSACTIONS)
    state = txn.state
    if state == S.ONGOING:
        if fencing and commit:
            return Decision(ErrorCode.PRODUCER_FENCED)
        txn.pending = None
        changes = {"epoch": epoch, "last_epoch": NO_EPOCH} if fencing else {}
        return Decision(write=txn.transit(S.PREPARE_COMMIT if commit else S.PREPARE_ABORT, now, **changes))
    if state == S.COMPLETE_COMMIT:
        return Decision() if commit else Decision(ErrorCode.INVALID_TXN_STATE)
    if state == S.COMPLETE_ABORT:
        return Decision(ErrorCode.INVALID_TXN_STATE) if commit else Decision()
    if state == S.PREPARE_COMMIT:
        return Decision(ErrorCode.CONCURRENT_TRANSACTIONS if commit else ErrorCode.INVALID_TXN_STATE)
    if state == S.PREPARE_ABORT:
        return Decision(ErrorCode.INVALID_TXN_STATE if commit else ErrorCode.CONCURRENT_TRANSACTIONS)
    return Decision(ErrorCode.INVALID_TXN_STATE)


def completed(txn: Txn, now: int) -> Txn:
    """Every marker of a PrepareCommit / PrepareAbort is written: the state
    that ends the transaction."""
    final = S.COMPLETE_COMMIT if txn.state == S.PREPARE_COMMIT else S.COMPLETE_ABORT
    return txn.transit(final, now, partitions=frozenset())


def timed_out(txns, now: int) -> list[Txn]:
    """Open transactions older than their timeout, not already changing."""
    return [t for t in txns if t.state == S.ONGOING and t.pending is None and t.start_ms + t.timeout_ms < now]


def fence(txn: Txn) -> int:
    """Mark ``txn`` (Ongoing) as being fenced, for a new producer or a
    timeout; the epoch its abort is then written with (``end_txn`` with
    ``from_client`` False)."""
    txn.pending = S.PREPARE_EPOCH_FENCE
    return txn.epoch if epoch_exhausted(txn.epoch) else txn.epoch + 1


def expired(txns, now: int, expiration_ms: int) -> list[Txn]:
    """Idle ids unused for transactional.id.expiration.ms: to be tombstoned."""
    return [t for t in txns if t.state in IDLE and t.pending is None and t.update_ms + expiration_ms <= now]


def for_version(error: ErrorCode, version: int, fenced_since: int) -> ErrorCode:
    """PRODUCER_FENCED exists from the request version of KIP-588
    (``fenced_since``); older versions are answered INVALID_PRODUCER_EPOCH."""
    if error == ErrorCode.PRODUCER_FENCED and version < fenced_since:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return error


# The names Kafka's admin APIs give the states (DescribeTransactions, ListTransactions).
STATE_NAMES = {
    S.EMPTY: "Empty",
    S.ONGOING: "Ongoing",
    S.PREPARE_COMMIT: "PrepareCommit",
    S.PREPARE_ABORT: "PrepareAbort",
    S.COMPLETE_COMMIT: "CompleteCommit",
    S.COMPLETE_ABORT: "CompleteAbort",
    S.DEAD: "Dead",
    S.PREPARE_EPOCH_FENCE: "PrepareEpochFence",
}
