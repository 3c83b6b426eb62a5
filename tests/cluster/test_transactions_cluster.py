"""Transactions in a three-broker cluster (ZooKeeper, replication factor
3): the coordinator writes its state to a replicated __transaction_state
and its markers to partitions led by every broker (WriteTxnMarkers to
the others); when the coordinator is killed with kill -9 in the middle
of a transaction, the broker that takes over its partition loads the
transaction and the producer commits it there. librdkafka's producer."""

from __future__ import annotations

import itertools
import time

import pytest

from pybroker.groups import partition_for
from pybroker.local_cluster import LocalCluster
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.describe_transactions_request import DescribeTransactionsRequest
from pybroker.protocol.messages.produce_request import PartitionProduceData, ProduceRequest, TopicProduceData

from ..broker.wire import Wire
from ..storage.txn_batches import txn_batch
from ..txn.drivers import ConfluentTxn
from ..txn.reading import READ_COMMITTED, READ_UNCOMMITTED, values
from .test_replication_clients import create, states, unique, wait_isr

TXN_PARTITIONS = 3


@pytest.fixture(scope="module")
def cluster():
    props = {
        "auto.create.topics.enable": "false",
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.num.partitions": str(TXN_PARTITIONS),
        "replica.lag.time.max.ms": "2000",
        "zookeeper.session.timeout.ms": "4000",
    }
    with LocalCluster(3, overrides=props) as c:
        yield c


def _write(producer: ConfluentTxn, topic: str, tag: str) -> None:
    for p in range(3):
        producer.p.produce(topic, f"{tag}-p{p}".encode(), partition=p)
    assert producer.p.flush(60) == 0


def _describe(bootstrap: str, txn_id: str):
    """DescribeTransactions sent to that broker (its coordinator) alone: a
    client library might ask a paused broker first."""
    w = Wire(bootstrap)
    try:
        body = DescribeTransactionsRequest(transactional_ids=[txn_id])
        w.send(body, 0, 1)
        (state,) = w.receive(body.API_KEY, 0)[1].transaction_states
        assert state.error_code == 0, state
        return state
    finally:
        w.close()


def _state(bootstrap: str, txn_id: str) -> str:
    return _describe(bootstrap, txn_id).transaction_state


def test_markers_reach_partitions_led_by_every_broker(cluster):
    topic = unique("txn-spread")
    create(cluster.brokers[0].bootstrap, topic, 3)
    assert {s[0] for s in states(cluster, topic).values()} == {1, 2, 3}
    producer = ConfluentTxn(cluster.bootstrap_servers, topic, topic, unique("txn-spread-id"))
    try:
        for tag, commit in (("one", True), ("two", False), ("three", True)):
            producer.begin()
            _write(producer, topic, tag)
            producer.commit() if commit else producer.abort()
    finally:
        producer.close()
    for p in range(3):
        assert values(cluster.bootstrap_servers, topic, READ_COMMITTED, 2, p) == [f"one-p{p}", f"three-p{p}"]
        assert values(cluster.bootstrap_servers, topic, READ_UNCOMMITTED, 3, p) == [
            f"one-p{p}", f"two-p{p}", f"three-p{p}"
        ]


def test_a_transaction_survives_the_kill_9_of_its_coordinator(cluster):
    topic, txn_id = unique("txn-failover"), unique("txn-failover-id")
    create(cluster.brokers[0].bootstrap, topic, 3)
    producer = ConfluentTxn(cluster.bootstrap_servers, topic, topic, txn_id, **{"transaction.timeout.ms": 120000})
    coordinator = states(cluster, "__transaction_state")[partition_for(txn_id, TXN_PARTITIONS)][0]
    killed = cluster.broker(coordinator)
    try:
        producer.begin()
        _write(producer, topic, "before")
        killed.kill()
        producer.commit()
    finally:
        producer.close()
        killed.start()
    for p in range(3):
        assert values(cluster.bootstrap_servers, topic, READ_COMMITTED, 1, p) == [f"before-p{p}"]
    wait_isr(cluster, topic, 0, {1, 2, 3}, timeout=60)


def test_the_new_coordinator_finishes_a_commit_its_predecessor_began(cluster):
    """Mid-commit: PrepareCommit is written, and a marker cannot be, its
    partition's leader being paused; then the coordinator is killed. The
    broker that takes over the state partition finishes the commit."""
    topic, txn_id = unique("txn-midcommit"), unique("txn-midcommit-id")
    create(cluster.brokers[0].bootstrap, topic, 3)
    producer = ConfluentTxn(cluster.bootstrap_servers, topic, topic, txn_id, **{"transaction.timeout.ms": 120000})
    coordinator = states(cluster, "__transaction_state")[partition_for(txn_id, TXN_PARTITIONS)][0]
    leaders = {p: s[0] for p, s in states(cluster, topic).items()}
    paused = cluster.broker(next(b for b in sorted(set(leaders.values())) if b != coordinator))
    killed = cluster.broker(coordinator)
    try:
        producer.begin()
        _write(producer, topic, "mid")
        paused.pause()
        try:
            producer.commit()  # answered once PrepareCommit is committed, before the markers
            assert _state(killed.bootstrap, txn_id) == "PrepareCommit"
            killed.kill()
        finally:
            paused.resume()
    finally:
        producer.close()
    for p in range(3):
        assert values(cluster.bootstrap_servers, topic, READ_COMMITTED, 1, p) == [f"mid-p{p}"]
    killed.start()
    wait_isr(cluster, topic, 0, {1, 2, 3}, timeout=60)


def test_a_leader_asks_the_remote_coordinator_before_a_transactions_first_batch(cluster):
    """KIP-890: a transactional batch for a partition not in its
    transaction, sent to a leader that is not the coordinator, is refused
    INVALID_TXN_STATE once that leader asked the coordinator
    (AddPartitionsToTxn v4, verify only); added first, it is accepted."""
    topic, txn_id = unique("txn-verify"), unique("txn-verify-id")
    create(cluster.brokers[0].bootstrap, topic, 3)
    producer = ConfluentTxn(cluster.bootstrap_servers, topic, topic, txn_id)
    try:
        coordinator = states(cluster, "__transaction_state")[partition_for(txn_id, TXN_PARTITIONS)][0]
        partition, leader = next((p, s[0]) for p, s in sorted(states(cluster, topic).items()) if s[0] != coordinator)
        described = _describe(cluster.broker(coordinator).bootstrap, txn_id)
        batch = txn_batch(described.producer_id, [b"stray"], 0, epoch=described.producer_epoch)
        body = ProduceRequest(transactional_id=txn_id, acks=-1, timeout_ms=10000, topic_data=[
            TopicProduceData(name=topic, partition_data=[PartitionProduceData(index=partition, records=batch)])
        ])
        # NOT_ENOUGH_REPLICAS is the retriable answer while the coordinator
        # cannot be asked (after the failovers above, still loading); a
        # producer retries it, and so does the test, until a deadline.
        deadline = time.monotonic() + 30
        w = Wire(cluster.broker(leader).bootstrap)
        try:
            for correlation in itertools.count(1):
                w.send(body, 9, correlation)
                answer = w.receive(body.API_KEY, 9)[1].responses[0].partition_responses[0]
                if answer.error_code != ErrorCode.NOT_ENOUGH_REPLICAS or time.monotonic() > deadline:
                    break
        finally:
            w.close()
        assert answer.error_code == ErrorCode.INVALID_TXN_STATE, answer
        producer.begin()
        producer.p.produce(topic, b"added", partition=partition)
        producer.commit()
    finally:
        producer.close()
    assert values(cluster.bootstrap_servers, topic, READ_UNCOMMITTED, 1, partition) == ["added"]
