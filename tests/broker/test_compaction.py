"""The broker's log cleaner, seen by a real client: after compaction a
consumer reading from the beginning gets the latest value of every key,
at the offsets they were written at."""

import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from pybroker.testing import running_broker

PROPS = {
    "log.cleanup.policy": "compact",
    "log.cleaner.backoff.ms": "50",
    "log.cleaner.min.cleanable.ratio": "0.01",
}


def read_all(bootstrap, topic, end):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    out = []
    deadline = time.monotonic() + 20
    while consumer.position(tp) < end and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            out.extend((r.offset, r.key, r.value) for r in records)
    consumer.close()
    return out


def test_compaction_keeps_the_latest_value_per_key():
    with running_broker(PROPS) as broker:
        # Small segments are a topic setting: the broker's default must be 1 MiB or more.
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        admin.create_topics([NewTopic("compacted", 1, 1, topic_configs={"segment.bytes": "4096"})])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=0, batch_size=200)
        written = {}
        for i in range(600):
            key = b"k%d" % (i % 20)
            meta = producer.send("compacted", key=key, value=b"v%d" % i).get(10)
            written[key] = (meta.offset, b"v%d" % i)
        producer.close()
        plog = broker.broker.replicas.partition("compacted", 0).log
        end = plog.log_end_offset
        deadline = time.monotonic() + 30
        while plog.size_in_bytes > 8 * 4096 and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for the cleaner thread, bounded by the deadline
        assert plog.size_in_bytes <= 8 * 4096, "the cleaner did not run"
        records = read_all(broker.bootstrap_servers, "compacted", end)
        latest = {}
        for offset, key, value in records:
            latest[key] = (offset, value)
        offsets = [r[0] for r in records]
        assert offsets == sorted(offsets) and len(records) < 600
        # Every key's last write survives at its original offset; the active
        # segment may still hold older duplicates, never a newer one.
        assert latest == written
