"""A broker's /metrics against what real clients did: producers' acknowledged
records, consumers' reads and commits, the requests they sent, their
connections; the log sizes against the files on disk."""

from __future__ import annotations

import os
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer

from pybroker.process import free_port
from pybroker.testing import running_broker

from .scrape import poll, scrape

TIMEOUT = 30


@pytest.fixture(scope="module")
def broker():
    port = free_port()
    props = {"metrics.listener": f"http://127.0.0.1:{port}", "group.initial.rebalance.delay.ms": "0"}
    with running_broker(props) as running:
        running.metrics_url = f"http://127.0.0.1:{port}/metrics"
        yield running


def new_topic(broker, partitions: int = 1) -> str:
    name = f"m-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(TIMEOUT)
    return name


def produce(broker, topic: str, count: int, size: int = 100, acks: str = "all") -> int:
    """Records the broker acknowledged (librdkafka's delivery reports)."""
    acked = []
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "acks": acks, "linger.ms": 5})

    def delivered(err, msg):
        if err is None:
            acked.append(msg.offset())

    for i in range(count):
        producer.produce(topic, value=os.urandom(size), key=str(i).encode(), on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(TIMEOUT) == 0
    return len(acked)


def consume(broker, topic: str, group: str, count: int, commit_at: int | None = None) -> int:
    """Read ``count`` records of partition 0 in ``group``; commit ``commit_at``
    (the position read to, by default). Returns the offset committed."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        got = 0
        while got < count:
            batch = consumer.consume(count - got, timeout=TIMEOUT)
            assert batch, f"no record within {TIMEOUT} s after {got}"
            got += sum(1 for m in batch if m.error() is None)
        offset = got if commit_at is None else commit_at
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
        return offset
    finally:
        consumer.close()


def test_messages_in_equal_what_the_producers_had_acknowledged(broker):
    topic = new_topic(broker, partitions=3)
    acked = produce(broker, topic, 1000, acks="all") + produce(broker, topic, 500, acks="1")
    assert acked == 1500
    metrics = scrape(broker.metrics_url)
    assert metrics.value("kafka_server_brokertopicmetrics_messagesin_total", topic=topic) == acked
    # The batches' bytes: at least the values themselves.
    assert metrics.value("kafka_server_brokertopicmetrics_bytesin_total", topic=topic) > acked * 100
    ends = metrics.matching("kafka_log_log_logendoffset", topic=topic)
    assert sorted(s.labels["partition"] for s in ends) == ["0", "1", "2"]
    assert sum(s.value for s in ends) == acked


def test_bytes_out_grow_by_what_a_consumer_read(broker):
    topic = new_topic(broker)
    produce(broker, topic, 200)
    before = scrape(broker.metrics_url).value("kafka_server_brokertopicmetrics_bytesout_total", topic=topic)
    assert before in (None, 0)
    consume(broker, topic, f"g-{topic}", 200)
    metrics = scrape(broker.metrics_url)
    size = metrics.value("kafka_log_log_size", topic=topic, partition="0")
    # Everything was read once at least (a consumer may prefetch a batch twice, never less).
    assert metrics.value("kafka_server_brokertopicmetrics_bytesout_total", topic=topic) >= size > 0


def test_requests_are_counted_per_api_with_a_latency_histogram_each(broker):
    before = scrape(broker.metrics_url)
    topic = new_topic(broker)
    produce(broker, topic, 50, acks="1")
    metrics = scrape(broker.metrics_url)

    def total(scrape_, request):
        return sum(s.value for s in scrape_.matching("kafka_network_requestmetrics_requests_total", request=request))

    for request in ("Produce", "Metadata", "ApiVersions", "CreateTopics"):
        assert total(metrics, request) > total(before, request), request
        count = metrics.value("kafka_network_requestmetrics_totaltime_seconds_count", request=request)
        assert count == total(metrics, request), request
        inf = metrics.value("kafka_network_requestmetrics_totaltime_seconds_bucket", request=request, le="+Inf")
        assert inf == count
        assert metrics.value("kafka_network_requestmetrics_totaltime_seconds_sum", request=request) > 0
    versions = {
        s.labels["version"] for s in metrics.matching("kafka_network_requestmetrics_requests_total", request="Produce")
    }
    assert versions and all(v.isdigit() for v in versions)
    # Buckets are cumulative.
    buckets = [
        s.value for s in metrics.matching("kafka_network_requestmetrics_totaltime_seconds_bucket", request="Produce")
    ]
    assert buckets == sorted(buckets)


def test_connections_open_now_and_accepted_since_start(broker):
    def connections():
        return scrape(broker.metrics_url).value("kafka_server_socketservermetrics_connection_count")

    quiet = poll(lambda: connections() == 0 or None, TIMEOUT, "no client connection left open")
    assert quiet
    accepted = scrape(broker.metrics_url).value("kafka_server_socketservermetrics_connection_creation_total")
    clients = [KafkaConsumer(bootstrap_servers=broker.bootstrap_servers) for _ in range(3)]
    try:
        for c in clients:
            c.topics()  # one connection each, at least
        assert connections() >= 3
    finally:
        for c in clients:
            c.close()
    poll(lambda: connections() == 0, TIMEOUT, "the connections to be counted closed")
    assert (
        scrape(broker.metrics_url).value("kafka_server_socketservermetrics_connection_creation_total") >= accepted + 3
    )


def test_log_size_per_partition_is_the_size_of_its_segment_files(broker):
    topic = new_topic(broker, partitions=2)
    produce(broker, topic, 300, size=1000)
    metrics = scrape(broker.metrics_url)
    for index in (0, 1):
        size = metrics.value("kafka_log_log_size", topic=topic, partition=str(index))
        on_disk = sum(f.stat().st_size for f in (broker.data_dir / f"{topic}-{index}").glob("*.log"))
        assert size == on_disk > 0


def test_group_lag_is_what_was_produced_minus_what_was_committed(broker):
    topic = new_topic(broker)
    group = f"g-{topic}"
    produced = produce(broker, topic, 120)
    committed = consume(broker, topic, group, 120, commit_at=75)
    metrics = scrape(broker.metrics_url)
    assert metrics.value("kafka_consumergroup_current_offset", consumergroup=group, topic=topic, partition="0") == 75
    lag = metrics.value("kafka_consumergroup_lag", consumergroup=group, topic=topic, partition="0")
    assert lag == produced - committed == 45
    produce(broker, topic, 5)
    assert scrape(broker.metrics_url).value("kafka_consumergroup_lag", consumergroup=group, topic=topic) == 50


def test_rebalances_groups_and_fsyncs_are_counted(broker):
    before = scrape(broker.metrics_url)
    rebalances = before.value("kafka_server_group_coordinator_metrics_group_completed_rebalance_total")
    flushes = before.value("kafka_log_logflushstats_logflushrateandtime_seconds_count")
    topic = new_topic(broker)
    produce(broker, topic, 10, acks="all")  # acks=all on a single node waits for an fsync
    consume(broker, topic, f"g-{topic}", 10)
    metrics = scrape(broker.metrics_url)
    # The consumer's join, then its leave emptying the group: two generations.
    assert metrics.value("kafka_server_group_coordinator_metrics_group_completed_rebalance_total") >= rebalances + 2
    assert metrics.value("kafka_consumergroup_generation", consumergroup=f"g-{topic}") >= 2
    assert metrics.value("kafka_coordinator_group_groupmetadatamanager_numgroups") >= 1
    assert metrics.value("kafka_log_logflushstats_logflushrateandtime_seconds_count") > flushes
    # A single node: its partitions are led here, none under-replicated or offline.
    assert metrics.value("kafka_server_replicamanager_leadercount") >= 1
    assert metrics.value("kafka_server_replicamanager_underreplicatedpartitions") == 0
    assert metrics.value("kafka_controller_kafkacontroller_offlinepartitionscount") == 0
