"""One round trip per client library over every partition of a topic.

Each function produces ``per_partition`` messages to each partition (acks=all,
the partition named explicitly, so every partition's leader gets a share),
then reads everything back in a consumer group that subscribes and commits,
and returns a ``RoundTrip``: where each message was acknowledged, where each
was read, and the offsets the group committed as the client reports them.
The client is given one broker's address; it must find each partition's
leader from Metadata on its own, as a client of any Kafka cluster does.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

KAFKAJS = Path(__file__).parents[2] / "compat" / "kafkajs"
TIMEOUT = 60.0

Where = tuple[int, int]  # (partition, offset)


@dataclass
class RoundTrip:
    delivered: dict[Where, str] = field(default_factory=dict)
    consumed: dict[Where, str] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)

    def read(self, partition: int, offset: int, value: str) -> None:
        assert (partition, offset) not in self.consumed, f"read twice: partition {partition} offset {offset}"
        self.consumed[(partition, offset)] = value


def values(client: str, partition: int, n: int) -> list[str]:
    return [f"{client} p{partition} #{i}" for i in range(n)]


def kafka_python(bootstrap: str, topic: str, group: str, partitions: int, per_partition: int) -> RoundTrip:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    out = RoundTrip()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        sent = [
            (v, producer.send(topic, value=v.encode(), partition=p))
            for p in range(partitions)
            for v in values("kafka-python", p, per_partition)
        ]
        for v, future in sent:
            md = future.get(timeout=TIMEOUT)
            out.delivered[(md.partition, md.offset)] = v
    finally:
        producer.close(timeout=10)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + TIMEOUT
        while len(out.consumed) < len(out.delivered) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    out.read(tp.partition, r.offset, r.value.decode())
        consumer.commit()
        out.committed = {p: consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        consumer.close(autocommit=False)
    return out


def confluent(bootstrap: str, topic: str, group: str, partitions: int, per_partition: int) -> RoundTrip:
    from confluent_kafka import Consumer, Producer, TopicPartition

    out = RoundTrip()
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            out.delivered[(msg.partition(), msg.offset())] = msg.value().decode()

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for p in range(partitions):
        for v in values("confluent-kafka", p, per_partition):
            producer.produce(topic, value=v.encode(), partition=p, on_delivery=report)
    assert producer.flush(TIMEOUT) == 0, "messages left undelivered"
    assert not errors, errors[:3]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + TIMEOUT
        while len(out.consumed) < len(out.delivered) and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=100, timeout=0.5):
                assert msg.error() is None, msg.error()
                out.read(msg.partition(), msg.offset(), msg.value().decode())
        consumer.commit(asynchronous=False)
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        out.committed = {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()
    return out


def aiokafka(bootstrap: str, topic: str, group: str, partitions: int, per_partition: int) -> RoundTrip:
    return asyncio.run(_aiokafka(bootstrap, topic, group, partitions, per_partition))


async def _aiokafka(bootstrap, topic, group, partitions, per_partition) -> RoundTrip:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    out = RoundTrip()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for p in range(partitions):
            for v in values("aiokafka", p, per_partition):
                md = await asyncio.wait_for(producer.send_and_wait(topic, v.encode(), partition=p), TIMEOUT)
                out.delivered[(md.partition, md.offset)] = v
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(out.consumed) < len(out.delivered) and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for r in records:
                    out.read(tp.partition, r.offset, r.value.decode())
        await consumer.commit()
        out.committed = {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()
    return out


def kafkajs(bootstrap: str, topic: str, group: str, partitions: int, per_partition: int) -> RoundTrip:
    """compat/kafkajs/partitions-roundtrip.js, which prints what happened as JSON lines."""
    env = dict(
        os.environ,
        BROKERS=bootstrap,
        TOPIC=topic,
        GROUP=group,
        PARTITIONS=str(partitions),
        PER_PARTITION=str(per_partition),
        TIMEOUT_MS=str(int(TIMEOUT * 1000)),
    )
    result = subprocess.run(
        ["node", "partitions-roundtrip.js"],
        cwd=KAFKAJS,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT + 30,
        check=False,
    )
    assert result.returncode == 0, f"KafkaJS exited {result.returncode}:\n{result.stderr[-4000:]}"
    out = RoundTrip()
    for line in map(json.loads, result.stdout.splitlines()):
        if "delivered" in line:
            p, offset, value = line["delivered"]
            out.delivered[(p, offset)] = value
        elif "consumed" in line:
            out.read(*line["consumed"])
        else:
            out.committed = {int(p): o for p, o in line["committed"].items()}
    return out


CLIENTS = {"kafka-python": kafka_python, "confluent-kafka": confluent, "aiokafka": aiokafka, "kafkajs": kafkajs}
