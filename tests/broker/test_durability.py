"""What the broker acknowledged survives a restart, at the same offsets.

The broker runs in a child process. A client writes a first lot of
messages (all acknowledged), then keeps producing while the broker is
stopped under it — gracefully (SIGTERM) or by kill -9 — with acks=1 and
acks=all. The broker is started again on the same data directory; a fresh
consumer must find every acknowledged message at the offset it was
acknowledged with, offsets dense from 0, nothing foreign or doubled; and
new writes must continue right after the recovered log end.

(kill -9 loses the process, not the page cache, so acks=1 data must
survive it too; power loss is what acks=all's fsync is for, and is not
simulated here.)
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

PARTITIONS = 3
TOPIC = "durable"
FIRST, STREAM_BEFORE_STOP = 1000, 400
IN_FLIGHT_WINDOW = 300


def value(i: int) -> bytes:
    return b"durable-%07d|" % i + bytes([i % 251]) * (i % 300)


class ConfluentWriter:
    name = "confluent-kafka"

    def __init__(self, bootstrap: str, acks: str):
        from confluent_kafka import Producer

        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": acks,
                "linger.ms": 2,
                "batch.num.messages": 50,
                "message.timeout.ms": 3000,  # once the broker is gone, give up fast
                "reconnect.backoff.max.ms": 200,
            }
        )
        self.acked: dict[int, tuple[int, int]] = {}

    def send(self, i: int) -> None:
        def report(err, msg):
            if err is None:
                self.acked[i] = (msg.partition(), msg.offset())

        while True:
            try:
                self.producer.produce(TOPIC, key=b"key-%d" % (i % 13), value=value(i), on_delivery=report)
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)

    def acked_count(self) -> int:
        self.producer.poll(0)
        return len(self.acked)

    def finish(self, timeout: float) -> dict[int, tuple[int, int]]:
        self.producer.flush(timeout)
        return dict(self.acked)

    def close(self) -> None:
        self.producer.purge()
        self.producer.flush(5)


class KafkaPythonWriter:
    name = "kafka-python"

    def __init__(self, bootstrap: str, acks: str):
        from kafka import KafkaProducer

        # Not idempotent: this is about acks. (kafka-python's idempotent
        # producer retries in-flight batches forever, so it cannot be
        # abandoned once its broker is gone; test_idempotence covers it.)
        config = {"enable_idempotence": False}
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all" if acks == "all" else int(acks),
            linger_ms=2,
            batch_size=8192,
            request_timeout_ms=2000,
            delivery_timeout_ms=3000,  # once the broker is gone, give up fast
            reconnect_backoff_max_ms=200,
            **config,
        )
        self.futures: dict[int, object] = {}

    def send(self, i: int) -> None:
        self.futures[i] = self.producer.send(TOPIC, key=b"key-%d" % (i % 13), value=value(i))

    def acked_count(self) -> int:
        return sum(1 for f in self.futures.values() if f.is_done and f.succeeded())

    def finish(self, timeout: float) -> dict[int, tuple[int, int]]:
        from kafka.errors import KafkaTimeoutError

        try:
            self.producer.flush(timeout=timeout)
        except KafkaTimeoutError:
            pass  # the broker is gone: what is unacknowledged stays so
        out = {}
        for i, f in self.futures.items():
            if f.is_done and f.succeeded():
                md = f.value
                out[i] = (md.partition, md.offset)
        return out

    def close(self) -> None:
        # Abandon what is still unsent, so nothing reaches the restarted broker.
        self.producer.close(timeout=0)


WRITERS = {w.name: w for w in (ConfluentWriter, KafkaPythonWriter)}


def read_all(bootstrap: str) -> dict[int, list[tuple[int, bytes]]]:
    """(offset, value) per partition, up to the end offsets, with kafka-python."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(tps)
        out: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
        deadline = time.monotonic() + 60
        while any(len(out[tp.partition]) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                out[tp.partition] += [(r.offset, r.value) for r in records]
        return out
    finally:
        consumer.close()


def check_log(stored: dict[int, list[tuple[int, bytes]]], acked: dict[int, tuple[int, int]], sent: int) -> None:
    at = {(p, o): v for p, recs in stored.items() for o, v in recs}
    for p, recs in stored.items():
        assert [o for o, _ in recs] == list(range(len(recs))), f"partition {p}: offsets not dense from 0"
    lost = {i: po for i, po in acked.items() if at.get(po) != value(i)}
    assert not lost, f"{len(lost)} acknowledged messages missing or changed, e.g. {next(iter(lost.items()))}"
    known = {value(i) for i in range(sent)}
    values = [v for v in at.values()]
    assert all(v in known for v in values), "the log holds bytes nobody sent"
    doubled = [v for v, n in Counter(values).items() if n > 1]
    assert not doubled, f"{len(doubled)} messages stored twice"


@pytest.mark.parametrize("kill", [False, True], ids=["graceful", "kill-9"])
@pytest.mark.parametrize("acks", ["1", "all"])
@pytest.mark.parametrize("client_name", list(WRITERS))
def test_acknowledged_messages_survive_a_restart(broker_process, client_name, acks, kill):
    broker = broker_process({"num.partitions": str(PARTITIONS)})
    writer = WRITERS[client_name](broker.bootstrap, acks)
    sent = 0
    try:
        for _ in range(FIRST):
            writer.send(sent)
            sent += 1
        first = writer.finish(30)
        assert len(first) == FIRST, "the first lot was not fully acknowledged"
        # Keep producing and stop the broker under the client once some of
        # this stream is acknowledged: requests are in flight at that moment.
        target = FIRST + STREAM_BEFORE_STOP
        deadline = time.monotonic() + 60
        while writer.acked_count() < target:
            assert time.monotonic() < deadline, "the stream was not acknowledged in time"
            if sent - writer.acked_count() >= IN_FLIGHT_WINDOW:
                # Bound what the client buffers, or on a busy machine its
                # batches expire (delivery timeout) before they are sent.
                time.sleep(0.001)  # polling the acknowledgement count, bounded by the deadline
                continue
            writer.send(sent)
            sent += 1
        for _ in range(200):  # and a little more, in flight when it stops
            writer.send(sent)
            sent += 1
        broker.kill() if kill else broker.stop()
        acked = writer.finish(10)
    finally:
        writer.close()
    assert len(acked) >= target
    broker.start()
    stored = read_all(broker.bootstrap)
    check_log(stored, acked, sent)
    ends = {p: len(recs) for p, recs in stored.items()}

    # The recovered log takes new writes right after its end.
    writer = WRITERS[client_name](broker.bootstrap, acks)
    try:
        later = list(range(sent, sent + 300))
        for i in later:
            writer.send(i)
        after = writer.finish(30)
    finally:
        writer.close()
    assert sorted(after) == later
    for p in range(PARTITIONS):
        offsets = sorted(o for part, o in after.values() if part == p)
        assert offsets == list(range(ends[p], ends[p] + len(offsets))), (
            f"partition {p}: new offsets do not follow the log end"
        )
    acked.update(after)
    check_log(read_all(broker.bootstrap), acked, sent + len(later))
