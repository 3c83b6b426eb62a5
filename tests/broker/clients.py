"""The same few operations through three real client libraries.

Each adapter produces a workload (reporting where each message went), reads
partitions from the beginning with assign() (no consumer group), and asks
for offsets by time and the beginning/end offsets. Nothing is mocked: these
are the libraries' own producers, consumers and admin clients over TCP.
"""

from __future__ import annotations

import asyncio
import time
import zlib

from .workload import Consumed, Delivered, Message

READ_TIMEOUT = 60.0


def _headers(raw) -> tuple:
    return tuple((k, None if v is None else bytes(v)) for k, v in (raw or ()))


def _opt_bytes(b):
    return None if b is None else bytes(b)


class KafkaPython:
    name = "kafka-python"

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap

    @staticmethod
    def partitioner(key: bytes, n: int) -> int:
        from kafka.partitioner.default import murmur2

        return (murmur2(key) & 0x7FFFFFFF) % n

    def producer(self, **config):
        from kafka import KafkaProducer

        return KafkaProducer(bootstrap_servers=self.bootstrap, **config)

    def produce(
        self, topic: str, messages: list[Message], codec: str = "none", acks="all", **config
    ) -> list[Delivered]:
        if acks != "all":
            # Idempotence needs acks=all; say so rather than get a warning.
            config.setdefault("enable_idempotence", False)
        producer = self.producer(
            acks=acks if acks == "all" else int(acks),
            compression_type=None if codec == "none" else codec,
            linger_ms=5,
            **config,
        )
        try:
            futures = [
                producer.send(topic, key=m.key, value=m.value, headers=list(m.headers), timestamp_ms=m.timestamp)
                for m in messages
            ]
            producer.flush(timeout=READ_TIMEOUT)
            return [
                Delivered(m.index, md.partition, md.offset)
                for m, md in ((m, f.get(timeout=READ_TIMEOUT)) for m, f in zip(messages, futures))
            ]
        finally:
            producer.close(timeout=10)

    def consumer(self):
        from kafka import KafkaConsumer

        return KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None)

    def _admin(self, fn):
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            return fn(admin)
        finally:
            admin.close()

    def create_topic(self, topic: str, partitions: int) -> None:
        from kafka.admin import NewTopic

        result = self._admin(lambda a: a.create_topics([NewTopic(topic, partitions, 1)]))
        assert [(t["name"], t["error_code"]) for t in result["topics"]] == [(topic, 0)], result

    def delete_records(self, topic: str, before: dict[int, int]) -> dict[int, int]:
        """Delete below the given offsets; returns the new low watermarks."""
        from kafka import TopicPartition

        result = self._admin(lambda a: a.delete_records({TopicPartition(topic, p): o for p, o in before.items()}))
        out = {}
        for tp, meta in result.items():
            assert meta["error_code"] == 0, meta
            out[tp.partition] = meta["low_watermark"]
        return out

    def delete_topic(self, topic: str) -> None:
        result = self._admin(lambda a: a.delete_topics([topic]))
        assert [(t["name"], t["error_code"]) for t in result["topics"]] == [(topic, 0)], result

    def topics(self) -> set[str]:
        return set(self._admin(lambda a: a.list_topics()))

    def consume(self, topic: str, partitions: int, count: int, timeout: float = READ_TIMEOUT) -> list[Consumed]:
        from kafka import TopicPartition

        consumer = self.consumer()
        out: list[Consumed] = []
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
            consumer.seek_to_beginning()
            deadline = time.monotonic() + timeout
            while len(out) < count and time.monotonic() < deadline:
                for tp, records in consumer.poll(timeout_ms=500).items():
                    out += [
                        Consumed(tp.partition, r.offset, r.key, r.value, _headers(r.headers), r.timestamp)
                        for r in records
                    ]
        finally:
            consumer.close()
        return out

    def offsets(self, topic: str, partitions: int, timestamps: dict[int, int]):
        """(beginning, end, {partition: offset or None for its timestamp})."""
        from kafka import TopicPartition

        consumer = self.consumer()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            begin = {tp.partition: o for tp, o in consumer.beginning_offsets(tps).items()}
            end = {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
            found = consumer.offsets_for_times({TopicPartition(topic, p): ts for p, ts in timestamps.items()})
            by_time = {tp.partition: (None if v is None else v.offset) for tp, v in found.items()}
            return begin, end, by_time
        finally:
            consumer.close()


class Confluent:
    name = "confluent-kafka"

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap

    @staticmethod
    def partitioner(key: bytes, n: int) -> int | None:
        # librdkafka's default "consistent_random": CRC32 of the key; empty
        # keys, like null ones, go to a random partition (None: not fixed).
        return zlib.crc32(key) % n if key else None

    def producer(self, **config):
        from confluent_kafka import Producer

        return Producer({"bootstrap.servers": self.bootstrap, **config})

    def produce(
        self, topic: str, messages: list[Message], codec: str = "none", acks="all", **config
    ) -> list[Delivered]:
        conf = {"acks": acks, "compression.type": codec, "linger.ms": 5}
        if acks == "all":
            conf["enable.idempotence"] = True
        conf.update(config)
        producer = self.producer(**conf)
        reports: dict[int, Delivered] = {}
        errors = []

        def report(index):
            def cb(err, msg):
                if err is not None:
                    errors.append((index, err))
                else:
                    reports[index] = Delivered(index, msg.partition(), msg.offset())

            return cb

        for m in messages:
            while True:
                try:
                    producer.produce(
                        topic,
                        key=m.key,
                        value=m.value,
                        headers=list(m.headers),
                        timestamp=m.timestamp,
                        on_delivery=report(m.index),
                    )
                    break
                except BufferError:
                    producer.poll(0.1)  # the local queue is full: serve delivery reports
        left = producer.flush(READ_TIMEOUT)
        assert left == 0, f"{left} messages not delivered"
        assert not errors, errors[:5]
        return [reports[m.index] for m in messages]

    def consumer(self):
        from confluent_kafka import Consumer

        return Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": "unused-assign-only", "enable.auto.commit": False}
        )

    def admin(self):
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap})

    def create_topic(self, topic: str, partitions: int) -> None:
        from confluent_kafka.admin import NewTopic

        admin = self.admin()  # keep the handle alive until the futures resolve
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        assert futures[topic].result(30) is None

    def delete_records(self, topic: str, before: dict[int, int]) -> dict[int, int]:
        from confluent_kafka import TopicPartition

        admin = self.admin()
        futures = admin.delete_records([TopicPartition(topic, p, o) for p, o in before.items()])
        return {tp.partition: f.result(30).low_watermark for tp, f in futures.items()}

    def delete_topic(self, topic: str) -> None:
        admin = self.admin()
        assert admin.delete_topics([topic])[topic].result(30) is None

    def topics(self) -> set[str]:
        return set(self.admin().list_topics(timeout=10).topics)

    def consume(self, topic: str, partitions: int, count: int, timeout: float = READ_TIMEOUT) -> list[Consumed]:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        consumer = self.consumer()
        out: list[Consumed] = []
        try:
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
            deadline = time.monotonic() + timeout
            while len(out) < count and time.monotonic() < deadline:
                for msg in consumer.consume(num_messages=1000, timeout=0.5):
                    assert msg.error() is None, msg.error()
                    out.append(
                        Consumed(
                            msg.partition(),
                            msg.offset(),
                            msg.key(),
                            msg.value(),
                            _headers(msg.headers()),
                            msg.timestamp()[1],
                        )
                    )
        finally:
            consumer.close()
        return out

    def offsets(self, topic: str, partitions: int, timestamps: dict[int, int]):
        from confluent_kafka import TopicPartition

        consumer = self.consumer()
        try:
            begin, end = {}, {}
            for p in range(partitions):
                begin[p], end[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            found = []
            if timestamps:
                found = consumer.offsets_for_times(
                    [TopicPartition(topic, p, ts) for p, ts in timestamps.items()], timeout=10
                )
            by_time = {}
            for tp in found:
                assert tp.error is None, tp.error
                by_time[tp.partition] = None if tp.offset < 0 else tp.offset
            return begin, end, by_time
        finally:
            consumer.close()


class AioKafka:
    name = "aiokafka"

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap

    @staticmethod
    def partitioner(key: bytes, n: int) -> int:
        from aiokafka.partitioner import murmur2

        return (murmur2(key) & 0x7FFFFFFF) % n

    def produce(
        self, topic: str, messages: list[Message], codec: str = "none", acks="all", **config
    ) -> list[Delivered]:
        return asyncio.run(self._produce(topic, messages, codec, acks, config))

    async def _produce(self, topic, messages, codec, acks, config):
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks=acks if acks == "all" else int(acks),
            compression_type=None if codec == "none" else codec,
            enable_idempotence=acks == "all",
            linger_ms=5,
            **config,
        )
        await producer.start()
        try:
            partitions = len(await producer.partitions_for(topic))
            futures, chosen = [], []
            for m in messages:
                # With acks=0 aiokafka resolves sends to None, so a keyless
                # message's partition must be chosen here to be known.
                part = m.index % partitions if acks == "0" and m.key is None else None
                futures.append(
                    await producer.send(
                        topic,
                        key=m.key,
                        value=m.value,
                        headers=list(m.headers),
                        timestamp_ms=m.timestamp,
                        partition=part,
                    )
                )
                if acks == "0":
                    chosen.append(self.partitioner(m.key, partitions) if part is None else part)
            results = await asyncio.wait_for(asyncio.gather(*futures), READ_TIMEOUT)
        finally:
            await producer.stop()
        if acks == "0":
            assert all(r is None for r in results)
            return [Delivered(m.index, p, -1) for m, p in zip(messages, chosen)]
        return [Delivered(m.index, md.partition, md.offset) for m, md in zip(messages, results)]

    def _admin(self, fn):
        from aiokafka.admin import AIOKafkaAdminClient

        async def run():
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                return await fn(admin)
            finally:
                await admin.close()

        return asyncio.run(run())

    def create_topic(self, topic: str, partitions: int) -> None:
        from aiokafka.admin import NewTopic

        result = self._admin(lambda a: a.create_topics([NewTopic(topic, partitions, 1)]))
        assert [tuple(e)[:2] for e in result.topic_errors] == [(topic, 0)], result

    def delete_records(self, topic: str, before: dict[int, int]) -> dict[int, int]:
        from aiokafka import TopicPartition
        from aiokafka.admin import RecordsToDelete

        result = self._admin(
            lambda a: a.delete_records({TopicPartition(topic, p): RecordsToDelete(o) for p, o in before.items()})
        )
        return {tp.partition: low for tp, low in result.items()}

    def delete_topic(self, topic: str) -> None:
        result = self._admin(lambda a: a.delete_topics([topic]))
        assert [tuple(e)[:2] for e in result.topic_error_codes] == [(topic, 0)], result

    def topics(self) -> set[str]:
        return set(self._admin(lambda a: a.list_topics()))

    def consume(self, topic: str, partitions: int, count: int, timeout: float = READ_TIMEOUT) -> list[Consumed]:
        return asyncio.run(self._consume(topic, partitions, count, timeout))

    async def _consume(self, topic, partitions, count, timeout):
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        out: list[Consumed] = []
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
            await consumer.seek_to_beginning()
            deadline = time.monotonic() + timeout
            while len(out) < count and time.monotonic() < deadline:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    out += [
                        Consumed(
                            tp.partition,
                            r.offset,
                            _opt_bytes(r.key),
                            _opt_bytes(r.value),
                            _headers(r.headers),
                            r.timestamp,
                        )
                        for r in records
                    ]
        finally:
            await consumer.stop()
        return out

    def offsets(self, topic: str, partitions: int, timestamps: dict[int, int]):
        return asyncio.run(self._offsets(topic, partitions, timestamps))

    async def _offsets(self, topic, partitions, timestamps):
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            begin = {tp.partition: o for tp, o in (await consumer.beginning_offsets(tps)).items()}
            end = {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
            found = await consumer.offsets_for_times({TopicPartition(topic, p): ts for p, ts in timestamps.items()})
            by_time = {tp.partition: (None if v is None else v.offset) for tp, v in found.items()}
            return begin, end, by_time
        finally:
            await consumer.stop()


CLIENTS = {c.name: c for c in (KafkaPython, Confluent, AioKafka)}
