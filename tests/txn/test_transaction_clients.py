"""Transactions with four clients' own transactional producers, against
one broker: confluent-kafka, kafka-python 3, aiokafka and KafkaJS.

Each client runs the same story on a topic of its own:
a committed transaction, an aborted one, one that also commits a
group's offsets (send_offsets_to_transaction / sendOffsets), one left
open while a read_committed reader stops before it (the last stable
offset) and continues once it commits, and one that commits offsets and
aborts (the offsets stay where the committed transaction put them).
read_committed sees the committed records only; read_uncommitted sees
every record."""

from __future__ import annotations

import pytest

from pybroker.testing import running_broker

from ..broker.clients import Confluent
from ..broker.workload import unique_topic
from .drivers import DRIVERS
from .reading import READ_COMMITTED, READ_UNCOMMITTED, committed, latest, values


@pytest.fixture(scope="module")
def broker():
    props = {
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.num.partitions": "4",
    }
    with running_broker(props) as b:
        yield b


@pytest.mark.parametrize("client", list(DRIVERS))
def test_commit_abort_offsets_and_the_last_stable_offset(broker, client):
    bootstrap = broker.bootstrap_servers
    topic, source, group = unique_topic(f"txn-{client}"), unique_topic("txn-input"), unique_topic("txn-group")
    admin = Confluent(bootstrap)
    admin.create_topic(topic, 1)
    admin.create_topic(source, 1)
    producer = DRIVERS[client](bootstrap, topic, source, unique_topic(f"txn-id-{client}"))
    try:
        producer.begin()
        producer.send("c1")
        producer.send("c2")
        producer.commit()

        producer.begin()
        producer.send("a1")
        producer.abort()

        producer.begin()
        producer.send("c3")
        producer.offsets(group, 0, 5)
        producer.commit()
        assert committed(bootstrap, group, source) == 5

        producer.begin()
        producer.send("open")
        assert values(bootstrap, topic, READ_COMMITTED, 3) == ["c1", "c2", "c3"]
        assert latest(bootstrap, topic, 1) < latest(bootstrap, topic, 0)
        producer.commit()
        assert values(bootstrap, topic, READ_COMMITTED, 4) == ["c1", "c2", "c3", "open"]

        producer.begin()
        producer.offsets(group, 0, 9)
        producer.send("x")
        producer.abort()
    finally:
        producer.close()
    assert committed(bootstrap, group, source) == 5
    assert values(bootstrap, topic, READ_COMMITTED, 4) == ["c1", "c2", "c3", "open"]
    assert values(bootstrap, topic, READ_UNCOMMITTED, 6) == ["c1", "c2", "a1", "c3", "open", "x"]
    assert latest(bootstrap, topic, 1) == latest(bootstrap, topic, 0)
