"""One transactional producer per client, behind the same few calls, for
the transaction tests: ``begin``, ``send`` (returns once the record is
written), ``offsets`` (send_offsets_to_transaction / sendOffsets for one
partition of the input topic), ``commit``, ``abort``, ``close``."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path

KAFKAJS = Path(__file__).parents[2] / "compat" / "kafkajs"
TIMEOUT_S = 30


class ConfluentTxn:
    def __init__(self, bootstrap: str, topic: str, input_topic: str, txn_id: str, **extra):
        from confluent_kafka import Producer

        self.bootstrap, self.topic, self.input = bootstrap, topic, input_topic
        self.p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, **extra})
        self.p.init_transactions(TIMEOUT_S)

    def begin(self):
        self.p.begin_transaction()

    def send(self, value: str):
        self.p.produce(self.topic, value.encode())
        assert self.p.flush(TIMEOUT_S) == 0

    def offsets(self, group: str, partition: int, offset: int):
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        try:
            meta = consumer.consumer_group_metadata()
            self.p.send_offsets_to_transaction([TopicPartition(self.input, partition, offset)], meta, TIMEOUT_S)
        finally:
            consumer.close()

    def commit(self):
        self.p.commit_transaction(TIMEOUT_S)

    def abort(self):
        self.p.abort_transaction(TIMEOUT_S)

    def close(self):
        from confluent_kafka import KafkaException

        try:
            self.p.flush(1)
        except KafkaException:  # a fenced producer's flush raises its fatal error again
            pass


class KafkaPythonTxn:
    def __init__(self, bootstrap: str, topic: str, input_topic: str, txn_id: str):
        from kafka import KafkaProducer

        self.topic, self.input = topic, input_topic
        self.p = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id)
        self.p.init_transactions()

    def begin(self):
        self.p.begin_transaction()

    def send(self, value: str):
        self.p.send(self.topic, value.encode()).get(TIMEOUT_S)

    def offsets(self, group: str, partition: int, offset: int):
        from kafka.structs import OffsetAndMetadata, TopicPartition

        self.p.send_offsets_to_transaction({TopicPartition(self.input, partition): OffsetAndMetadata(offset)}, group)

    def commit(self):
        self.p.commit_transaction()

    def abort(self):
        self.p.abort_transaction()

    def close(self):
        self.p.close(timeout=5)


class AiokafkaTxn:
    """aiokafka on an asyncio loop in a thread of its own."""

    def __init__(self, bootstrap: str, topic: str, input_topic: str, txn_id: str):
        self.topic, self.input = topic, input_topic
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start():
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id)
            await producer.start()
            return producer

        self.p = self._run(start())

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT_S)

    def begin(self):
        self._run(self.p.begin_transaction())

    def send(self, value: str):
        self._run(self.p.send_and_wait(self.topic, value.encode()))

    def offsets(self, group: str, partition: int, offset: int):
        from aiokafka.structs import TopicPartition

        self._run(self.p.send_offsets_to_transaction({TopicPartition(self.input, partition): offset}, group))

    def commit(self):
        self._run(self.p.commit_transaction())

    def abort(self):
        self._run(self.p.abort_transaction())

    def close(self):
        try:
            self._run(self.p.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(TIMEOUT_S)
            self.loop.close()


class KafkaJsTxn:
    """compat/kafkajs/transaction-driver.js, one command per line."""

    def __init__(self, bootstrap: str, topic: str, input_topic: str, txn_id: str):
        node = shutil.which("node")
        assert node, "node is needed (.ci/run installs KafkaJS with npm ci)"
        assert (KAFKAJS / "node_modules" / "kafkajs").exists(), "KafkaJS is not installed: npm ci in compat/kafkajs"
        env = dict(os.environ, BROKERS=bootstrap, TOPIC=topic, INPUT=input_topic, TXN_ID=txn_id)
        self.proc = subprocess.Popen(
            [node, "transaction-driver.js"], cwd=KAFKAJS, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._answer()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("exited")

    def _answer(self):
        try:
            line = self.lines.get(timeout=TIMEOUT_S * 2)
        except queue.Empty:
            raise AssertionError("the KafkaJS driver did not answer") from None
        if line != "ok":
            raise RuntimeError(f"KafkaJS: {line} {self.proc.stderr.read() if line == 'exited' else ''}")

    def _do(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        self._answer()

    def begin(self):
        self._do(op="begin")

    def send(self, value: str):
        self._do(op="send", value=value)

    def offsets(self, group: str, partition: int, offset: int):
        self._do(op="offsets", group=group, partition=partition, offset=offset)

    def commit(self):
        self._do(op="commit")

    def abort(self):
        self._do(op="abort")

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


DRIVERS = {"confluent-kafka": ConfluentTxn, "kafka-python": KafkaPythonTxn, "aiokafka": AiokafkaTxn,
           "kafkajs": KafkaJsTxn}
