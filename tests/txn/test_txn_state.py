"""The transaction coordinator's rules (txn/state.py), as data: what each
request does to a transactional id's state, and the errors Kafka answers."""

from __future__ import annotations

import pytest

from pybroker.protocol.error_codes import ErrorCode as E
from pybroker.txn import state as st
from pybroker.txn.state import IllegalTransition
from pybroker.txn.state import TxnState as S

T0 = 1_000_000
TP = ("out", 0)


def committed(txn, decision):
    """Apply a decision's write as the coordinator does once it is committed."""
    assert decision.error == E.NONE, decision
    assert txn.pending == decision.write.state
    txn.apply(decision.write)
    return txn


def fresh(pid=7, epoch=-1):
    txn = st.new_txn("t", pid, 60000, T0)
    txn.epoch = epoch
    return txn


def ongoing(parts=(TP,)):
    txn = fresh()
    committed(txn, st.init_producer_id(txn, 60000, -1, -1, None, T0))
    return committed(txn, st.add_partitions(txn, 7, 0, parts, T0 + 1))


def test_init_bumps_the_epoch_of_an_idle_id_and_clears_its_partitions():
    txn = fresh()
    committed(txn, st.init_producer_id(txn, 60000, -1, -1, None, T0))
    assert (txn.producer_id, txn.epoch, txn.state) == (7, 0, S.EMPTY)
    committed(txn, st.init_producer_id(txn, 30000, -1, -1, None, T0 + 5))
    assert (txn.epoch, txn.last_epoch, txn.timeout_ms, txn.update_ms) == (1, -1, 30000, T0 + 5)


def test_init_with_the_producers_own_epoch_keeps_the_last_one_for_its_retry():
    txn = fresh()
    committed(txn, st.init_producer_id(txn, 60000, -1, -1, None, T0))
    committed(txn, st.init_producer_id(txn, 60000, 7, 0, None, T0))
    assert (txn.epoch, txn.last_epoch) == (1, 0)
    # The producer never got the answer and asks again with epoch 0: same epoch back.
    committed(txn, st.init_producer_id(txn, 60000, 7, 0, None, T0))
    assert (txn.epoch, txn.last_epoch) == (1, 0)
    assert st.init_producer_id(txn, 60000, 7, 5, None, T0).error == E.PRODUCER_FENCED
    assert st.init_producer_id(txn, 60000, 99, 0, None, T0).error == E.PRODUCER_FENCED


def test_init_on_an_exhausted_epoch_starts_a_new_producer_id():
    txn = fresh(epoch=st.MAX_EPOCH - 1)
    committed(txn, st.init_producer_id(txn, 60000, -1, -1, lambda: 42, T0))
    assert (txn.producer_id, txn.epoch, txn.last_producer_id) == (42, 0, 7)


def test_init_fences_an_open_transaction_and_answers_concurrent_transactions():
    txn = ongoing()
    decision = st.init_producer_id(txn, 60000, -1, -1, None, T0)
    assert decision.fence and decision.error == E.CONCURRENT_TRANSACTIONS
    epoch = st.fence(txn)
    assert epoch == 1
    abort = st.end_txn(txn, 7, epoch, False, T0 + 2, from_client=False)
    committed(txn, abort)
    assert (txn.state, txn.epoch) == (S.PREPARE_ABORT, 1)
    # The old producer is fenced; its commit is refused.
    assert st.end_txn(txn, 7, 0, True, T0 + 3).error == E.PRODUCER_FENCED
    assert st.init_producer_id(txn, 60000, -1, -1, None, T0).error == E.CONCURRENT_TRANSACTIONS
    txn.apply(st.completed(txn, T0 + 4))
    assert (txn.state, txn.partitions) == (S.COMPLETE_ABORT, frozenset())
    committed(txn, st.init_producer_id(txn, 60000, -1, -1, None, T0 + 5))
    assert txn.epoch == 2


def test_add_partitions_checks_the_producer_then_writes_only_what_is_new():
    txn = ongoing()
    assert st.add_partitions(txn, 8, 0, [TP], T0).error == E.INVALID_PRODUCER_ID_MAPPING
    assert st.add_partitions(txn, 7, 1, [TP], T0).error == E.PRODUCER_FENCED
    assert st.add_partitions(None, 7, 0, [TP], T0).error == E.INVALID_PRODUCER_ID_MAPPING
    assert st.add_partitions(txn, 7, 0, [TP], T0) == st.Decision()  # already in: nothing to write
    decision = st.add_partitions(txn, 7, 0, [("out", 1)], T0 + 9)
    assert decision.write.partitions == {TP, ("out", 1)}
    assert decision.write.start_ms == T0 + 1  # the transaction's start stays
    assert st.add_partitions(txn, 7, 0, [("out", 2)], T0).error == E.CONCURRENT_TRANSACTIONS  # one change at a time
    txn.abandon()
    assert txn.partitions == {TP}


def test_end_txn_prepares_then_completes_and_retries_are_answered_as_kafka_does():
    txn = ongoing()
    committed(txn, st.end_txn(txn, 7, 0, True, T0 + 2))
    assert txn.state == S.PREPARE_COMMIT
    assert st.end_txn(txn, 7, 0, True, T0).error == E.CONCURRENT_TRANSACTIONS
    assert st.end_txn(txn, 7, 0, False, T0).error == E.INVALID_TXN_STATE
    assert st.add_partitions(txn, 7, 0, [TP], T0).error == E.CONCURRENT_TRANSACTIONS
    txn.apply(st.completed(txn, T0 + 3))
    assert txn.state == S.COMPLETE_COMMIT
    assert st.end_txn(txn, 7, 0, True, T0) == st.Decision()  # a retry of the commit
    assert st.end_txn(txn, 7, 0, False, T0).error == E.INVALID_TXN_STATE
    empty = fresh()
    committed(empty, st.init_producer_id(empty, 60000, -1, -1, None, T0))
    assert st.end_txn(empty, 7, 0, True, T0).error == E.INVALID_TXN_STATE


def test_verify_only_says_whether_the_partition_is_in_the_open_transaction():
    txn = ongoing()
    assert st.verify_partitions(txn, 7, 0, [TP, ("out", 1)]) == {TP: E.NONE, ("out", 1): E.INVALID_TXN_STATE}
    assert st.verify_partitions(txn, 7, 1, [TP]) == {TP: E.PRODUCER_FENCED}
    assert st.verify_partitions(None, 7, 0, [TP]) == {TP: E.INVALID_PRODUCER_ID_MAPPING}


def test_timeouts_and_expiry_pick_the_right_ids():
    txn = ongoing()
    assert st.timed_out([txn], T0 + 1 + 60000) == []
    assert st.timed_out([txn], T0 + 1 + 60001) == [txn]
    idle = fresh()
    committed(idle, st.init_producer_id(idle, 60000, -1, -1, None, T0))
    assert st.expired([idle, txn], T0 + 999, 1000) == []
    assert st.expired([idle, txn], T0 + 1000, 1000) == [idle]


def test_a_transition_kafka_does_not_allow_is_a_bug():
    txn = fresh()
    with pytest.raises(IllegalTransition):
        txn.transit(S.PREPARE_COMMIT, T0)


def test_old_request_versions_get_invalid_producer_epoch_for_fenced():
    assert st.for_version(E.PRODUCER_FENCED, 1, 2) == E.INVALID_PRODUCER_EPOCH
    assert st.for_version(E.PRODUCER_FENCED, 2, 2) == E.PRODUCER_FENCED
    assert st.for_version(E.CONCURRENT_TRANSACTIONS, 0, 2) == E.CONCURRENT_TRANSACTIONS
