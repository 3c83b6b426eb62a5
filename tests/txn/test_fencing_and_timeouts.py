"""The coordinator ends transactions their producers cannot: a second
producer with the same transactional id fences the first (its open
transaction is aborted, its commit fails fatally), and a transaction
open past its timeout is aborted by the coordinator, so the last stable
offset moves on and no transaction hangs. librdkafka's producer."""

from __future__ import annotations

import time

import pytest

from pybroker.testing import running_broker

from ..broker.clients import Confluent
from ..broker.workload import unique_topic
from .drivers import ConfluentTxn
from .reading import READ_COMMITTED, READ_UNCOMMITTED, latest, values

FENCED = {-144, 90, 47}  # librdkafka's _FENCED, PRODUCER_FENCED, INVALID_PRODUCER_EPOCH
DEADLINE_S = 60


@pytest.fixture(scope="module")
def broker():
    props = {
        "offsets.topic.num.partitions": "2",
        "transaction.state.log.num.partitions": "2",
        # The timeout test waits for this check: Kafka's is every 10 s.
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "200",
    }
    with running_broker(props) as b:
        yield b


def _topic(broker, name: str) -> str:
    topic = unique_topic(name)
    Confluent(broker.bootstrap_servers).create_topic(topic, 1)
    return topic


def test_a_new_producer_fences_the_old_one_and_aborts_its_transaction(broker):
    from confluent_kafka import KafkaException

    bootstrap = broker.bootstrap_servers
    topic = _topic(broker, "fence")
    txn_id = unique_topic("fence-id")
    old = ConfluentTxn(bootstrap, topic, topic, txn_id)
    old.begin()
    old.send("zombie")
    new = ConfluentTxn(bootstrap, topic, topic, txn_id)  # returns once the old transaction is aborted
    try:
        with pytest.raises(KafkaException) as raised:
            old.commit()
        error = raised.value.args[0]
        assert error.fatal() and error.code() in FENCED, error
        new.begin()
        new.send("current")
        new.commit()
    finally:
        new.close()
        old.close()
    assert values(bootstrap, topic, READ_COMMITTED, 1) == ["current"]
    assert values(bootstrap, topic, READ_UNCOMMITTED, 2) == ["zombie", "current"]


def test_a_transaction_open_past_its_timeout_is_aborted_and_the_lso_moves_on(broker):
    from confluent_kafka import KafkaException

    bootstrap = broker.bootstrap_servers
    topic = _topic(broker, "timeout")
    paused = ConfluentTxn(bootstrap, topic, topic, unique_topic("timeout-id"), **{"transaction.timeout.ms": 2000})
    try:
        paused.begin()
        paused.send("never committed")
        assert latest(bootstrap, topic, 1) == 0  # the open transaction holds the LSO
        deadline = time.monotonic() + DEADLINE_S
        while latest(bootstrap, topic, 1) != latest(bootstrap, topic, 0):
            assert time.monotonic() < deadline, "the timed-out transaction was never aborted"
            time.sleep(0.1)
        with pytest.raises(KafkaException):
            paused.commit()
    finally:
        paused.close()
    assert values(bootstrap, topic, READ_COMMITTED, 0) == []
    assert values(bootstrap, topic, READ_UNCOMMITTED, 1) == ["never committed"]
