"""Admin work on thousands of partitions, with Kafka's bounds.

Kafka refuses a CreateTopics of more than 10,000 partitions in all, or of
more than 10,000 metadata records (a topic, each partition and each config
count one), with POLICY_VIOLATION for every topic of the request; the same
bound holds for CreatePartitions. Below it, making the logs of thousands of
partitions must not stall the event loop: another client keeps producing
while a 2,000-partition topic is created and deleted, and no produce waits
for the admin work (before, every client froze for the whole creation).
The broker is a process of its own; its clients are confluent-kafka's
AdminClient and a raw producer that times each request.
"""

from __future__ import annotations

import time

import pytest

from .clients import Confluent
from .raw_requests import TimedProducer, create, produce
from .wire import Wire
from .workload import unique_topic

POLICY_VIOLATION = 44
# Far above what a produce waits on a broker that keeps serving, far below
# what the admin work takes when it holds the event loop (seconds).
STALL = 1.5


def create_topic(admin, name: str, partitions: int, configs: dict | None = None):
    from confluent_kafka.admin import NewTopic

    return admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=configs or {})],
                               request_timeout=120)[name]


def refusal(future) -> tuple[int, str]:
    from confluent_kafka import KafkaException

    with pytest.raises(KafkaException) as caught:
        future.result(120)
    return caught.value.args[0].code(), caught.value.args[0].str()


@pytest.mark.parametrize(
    "layout, message",
    [
        ([10_001], "Excessively large number of partitions per request."),
        ([10_000], "Unable to perform excessively large batch operation."),
        ([5_000, 4_999], "Unable to perform excessively large batch operation."),
        ([9_994, 5], "Unable to perform excessively large batch operation."),
    ],
)
def test_requests_over_kafkas_bounds_are_refused_whole(broker_process, layout, message):
    from confluent_kafka.admin import AdminClient, NewTopic

    broker = broker_process()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    names = [unique_topic(f"huge{i}") for i in range(len(layout))]
    # All but the first pass the partition bound and fail the record bound:
    # 10,000 partitions and their topic; two topics and 9,999 partitions;
    # two topics, 9,999 partitions and two configs.
    configs = [{"retention.ms": "1000", "segment.ms": "1000"} if n == 5 else {} for n in layout]
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=n, replication_factor=1, config=c) for name, n, c in zip(names, layout, configs)],
        request_timeout=120,
    )
    for name in names:
        code, text = refusal(futures[name])
        assert code == POLICY_VIOLATION and message in text
    assert not set(names) & set(admin.list_topics(timeout=10).topics)


def test_create_partitions_over_the_bound_is_refused(broker_process):
    from confluent_kafka.admin import AdminClient, NewPartitions

    broker = broker_process()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = unique_topic("grow")
    create_topic(admin, topic, 3).result(60)
    code, text = refusal(admin.create_partitions([NewPartitions(topic, 10_004)], request_timeout=120)[topic])
    assert code == POLICY_VIOLATION and "excessively large" in text
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 3


def test_thousands_of_partitions_are_made_while_another_client_produces(broker_process):
    from confluent_kafka.admin import AdminClient, NewPartitions

    broker = broker_process()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    wide = unique_topic("wide")
    steady = unique_topic("steady")
    w = Wire(broker.bootstrap)
    create(w, steady)
    w.close()
    with TimedProducer(broker.bootstrap, steady) as producer:
        began = time.monotonic()
        create_topic(admin, wide, 2_000).result(120)
        created = time.monotonic()
        admin.create_partitions([NewPartitions(wide, 3_000)], request_timeout=120)[wide].result(120)
        grown = time.monotonic()
        assert admin.delete_topics([wide], request_timeout=120)[wide].result(120) is None
        deleted = time.monotonic()
        for what, start, end in (("creating", began, created), ("adding to", created, grown), ("deleting", grown, deleted)):
            waits = producer.waits_between(start, end)
            assert len(waits) >= 3, f"hardly any produce was answered while {what} the topic"
            assert max(waits) < STALL, f"a produce waited {max(waits):.2f} s while {what} the topic ({end - start:.1f} s)"
    assert not producer.errors, producer.errors
    # Made whole: every partition takes writes; after the deletion the name is free again.
    check = Wire(broker.bootstrap, timeout=60)
    create_topic(admin, wide, 2_000).result(120)
    for partition in (0, 1_999):
        produce(check, wide, partition, [b"v"])
    check.close()
    got = Confluent(broker.bootstrap).consume(wide, 2_000, 2, timeout=60)
    assert sorted(c.partition for c in got) == [0, 1_999]
