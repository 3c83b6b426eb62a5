"""The transactions admin APIs with kafka-python 3's admin client (the
calls of kafka-transactions.sh): ListTransactions, DescribeTransactions,
DescribeProducers (the open transaction's start offset and the
coordinator epoch of the last marker), and an administrative abort of an
open transaction on one partition (WriteTxnMarkers to its leader)."""

from __future__ import annotations

import time

import pytest

from pybroker.testing import running_broker

from ..broker.clients import Confluent
from ..broker.workload import unique_topic
from .drivers import ConfluentTxn
from .reading import latest

DEADLINE_S = 30


@pytest.fixture(scope="module")
def broker():
    with running_broker({"transaction.state.log.num.partitions": "3"}) as b:
        yield b


@pytest.fixture
def admin(broker):
    from kafka.admin import KafkaAdminClient

    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    yield client
    client.close()


def _until(check, what: str):
    deadline = time.monotonic() + DEADLINE_S
    while not (result := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return result


def test_list_describe_and_producers_follow_a_transaction(broker, admin):
    from kafka import TopicPartition
    from kafka.errors import TransactionalIdNotFoundError

    bootstrap = broker.bootstrap_servers
    topic, txn_id = unique_topic("admin-txn"), unique_topic("admin-txn-id")
    Confluent(bootstrap).create_topic(topic, 2)
    producer = ConfluentTxn(bootstrap, topic, topic, txn_id, **{"transaction.timeout.ms": 45000})
    tp = TopicPartition(topic, 0)
    try:
        producer.begin()
        producer.p.produce(topic, b"v", partition=0)
        assert producer.p.flush(30) == 0
        listed = [t for ts in admin.list_transactions().values() for t in ts if t.transactional_id == txn_id]
        assert [t.state.value for t in listed] == ["Ongoing"]
        complete = admin.list_transactions(state_filters=["CompleteCommit"])
        assert txn_id not in {t.transactional_id for ts in complete.values() for t in ts}
        desc = admin.describe_transactions([txn_id])[txn_id]
        assert desc.state.value == "Ongoing"
        assert desc.topic_partitions == {tp}
        assert desc.transaction_timeout_ms == 45000 and desc.transaction_start_time_ms > 0
        (active,) = admin.describe_producers([tp])[tp].active_producers
        assert (active.producer_id, active.producer_epoch) == (desc.producer_id, desc.producer_epoch)
        assert active.current_transaction_start_offset == 0 and active.coordinator_epoch == -1
        producer.commit()
        done = _until(lambda: (d := admin.describe_transactions([txn_id])[txn_id]).state.value == "CompleteCommit"
                      and d, "the transaction never completed")
        assert done.topic_partitions == set()
        (active,) = admin.describe_producers([tp])[tp].active_producers
        assert active.current_transaction_start_offset == -1 and active.coordinator_epoch == 0
    finally:
        producer.close()
    with pytest.raises(TransactionalIdNotFoundError):
        admin.describe_transactions(["no-such-transactional-id"])


def test_an_open_transaction_can_be_aborted_by_an_administrator(broker, admin):
    from kafka import TopicPartition
    from kafka.admin import AbortTransactionSpec

    bootstrap = broker.bootstrap_servers
    topic = unique_topic("admin-abort")
    Confluent(bootstrap).create_topic(topic, 1)
    producer = ConfluentTxn(bootstrap, topic, topic, unique_topic("admin-abort-id"))
    tp = TopicPartition(topic, 0)
    try:
        producer.begin()
        producer.send("stuck")
        assert latest(bootstrap, topic, 1) == 0
        (active,) = admin.describe_producers([tp])[tp].active_producers
        admin.abort_transaction(AbortTransactionSpec(tp, active.producer_id, active.producer_epoch,
                                                     active.coordinator_epoch))
        assert latest(bootstrap, topic, 1) == latest(bootstrap, topic, 0) == 2
        (active,) = admin.describe_producers([tp])[tp].active_producers
        assert active.current_transaction_start_offset == -1
    finally:
        producer.close()


def test_an_idle_transactional_id_expires():
    """After transactional.id.expiration.ms without use, the id is
    tombstoned: DescribeTransactions no longer finds it, and a producer
    using it again starts with a new producer id."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import TransactionalIdNotFoundError

    props = {
        "transaction.state.log.num.partitions": "1",
        "transactional.id.expiration.ms": "1000",
        "transaction.remove.expired.transaction.cleanup.interval.ms": "200",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "200",
    }
    with running_broker(props) as b:
        bootstrap = b.bootstrap_servers
        topic, txn_id = unique_topic("expiry"), unique_topic("expiry-id")
        Confluent(bootstrap).create_topic(topic, 1)
        producer = ConfluentTxn(bootstrap, topic, topic, txn_id)
        producer.begin()
        producer.send("v")
        producer.commit()
        producer.close()
        client = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            first = client.describe_transactions([txn_id])[txn_id].producer_id

            def gone() -> bool:
                try:
                    client.describe_transactions([txn_id])
                except TransactionalIdNotFoundError:
                    return True
                return False

            _until(gone, "the idle transactional id to expire")
            again = ConfluentTxn(bootstrap, topic, topic, txn_id)
            again.close()
            assert client.describe_transactions([txn_id])[txn_id].producer_id != first
        finally:
            client.close()
