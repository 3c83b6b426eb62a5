"""Idempotent producers whose Produce responses get lost: exactly once.

A proxy between client and broker (cutting_proxy.py) waits for a Produce
response — the broker has appended the batch by then — and closes the
connection instead of delivering it. The client cannot know its batch was
written, reconnects and sends it again with the same producer id, epoch and
sequence; the broker must recognise the retry and answer with the original
offsets instead of writing it twice. Then the same with a broker restart
(graceful and kill -9) between the lost response and the retry, so the
broker must know the producer's sequences from what it kept on disk.

Checked each time: the lost response was a success (the batch was
appended), the client really sent that batch again, every message is in
the log exactly once in send order per partition, and every batch
(producer id, epoch, sequence) is stored once.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from pybroker.testing import running_broker

from .cutting_proxy import CuttingProxy
from .workload import batches_on_disk, wait_for

PARTITIONS = 3
TOPIC = "idempotent"
BEFORE, AFTER = 600, 1400  # messages acknowledged before arming the proxy, and sent after


def values(n: int) -> list[bytes]:
    return [b"message-%06d " % i + b"x" * (i % 50) for i in range(n)]


class ConfluentIdempotent:
    name = "confluent-kafka"

    def __init__(self, bootstrap: str):
        from confluent_kafka import Producer

        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "linger.ms": 5,
                "batch.num.messages": 100,
                "retry.backoff.ms": 50,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 500,
            }
        )
        self.results: dict[int, tuple] = {}

    def send(self, index: int, value: bytes) -> None:
        def report(err, msg):
            self.results[index] = (err, msg.partition(), msg.offset())

        self.producer.produce(TOPIC, key=b"k%d" % (index % 7), value=value, on_delivery=report)
        self.producer.poll(0)

    def flush(self, timeout: float) -> dict[int, tuple[int, int]]:
        assert self.producer.flush(timeout) == 0, "messages left undelivered"
        errors = {i: r[0] for i, r in self.results.items() if r[0] is not None}
        assert not errors, list(errors.items())[:5]
        return {i: (p, o) for i, (_, p, o) in self.results.items()}

    def close(self) -> None:
        self.producer.flush(5)


class KafkaPythonIdempotent:
    name = "kafka-python"

    def __init__(self, bootstrap: str):
        from kafka import KafkaProducer

        # The default producer: idempotent with acks=all in kafka-python 3.x.
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            linger_ms=5,
            batch_size=4096,
            retry_backoff_ms=50,
            reconnect_backoff_ms=50,
            reconnect_backoff_max_ms=500,
        )
        assert self.producer.config["enable_idempotence"]
        self.futures: dict[int, object] = {}

    def send(self, index: int, value: bytes) -> None:
        self.futures[index] = self.producer.send(TOPIC, key=b"k%d" % (index % 7), value=value)

    def flush(self, timeout: float) -> dict[int, tuple[int, int]]:
        self.producer.flush(timeout=timeout)
        out = {}
        for i, f in self.futures.items():
            md = f.get(timeout=timeout)
            out[i] = (md.partition, md.offset)
        return out

    def close(self) -> None:
        self.producer.close(timeout=5)


PRODUCERS = {p.name: p for p in (ConfluentIdempotent, KafkaPythonIdempotent)}


def records_on_disk(data_dir) -> tuple[dict[int, list[bytes]], Counter]:
    """Values per partition in log order, and how often each producer batch
    (id, epoch, base sequence) is stored."""
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    stored = Counter()
    for partition, batch in batches_on_disk(data_dir, TOPIC):
        stored[(partition, batch.producer_id, batch.producer_epoch, batch.base_sequence)] += 1
        by_partition[partition] += [bytes(r.value) for r in batch.records()]
    return by_partition, stored


def check_exactly_once(data_dir, sent: list[bytes], acked: dict[int, tuple[int, int]], proxy: CuttingProxy) -> None:
    # The lost response reported a successful append: the retry was a duplicate.
    assert proxy.swallowed, "the proxy never cut a Produce response"
    response, lost_batches = proxy.swallowed[0]
    codes = [p.error_code for t in response.responses for p in t.partition_responses]
    assert codes and set(codes) == {0}, codes
    assert lost_batches
    resent = Counter(proxy.sent)
    for b in lost_batches:
        assert resent[b] >= 2, f"the client never sent {b} again"
    by_partition, stored = records_on_disk(data_dir)
    dups = {k: n for k, n in stored.items() if n > 1}
    assert not dups, f"producer batches stored more than once: {dups}"
    all_values = [v for vs in by_partition.values() for v in vs]
    dup_values = {v: n for v, n in Counter(all_values).items() if n > 1}
    assert not dup_values, f"{len(dup_values)} messages stored twice, e.g. {next(iter(dup_values))!r}"
    assert sorted(all_values) == sorted(sent), "messages missing from the log"
    # Send order per partition, and the offsets the client was given.
    for p, vs in by_partition.items():
        mine = sorted((i for i, (part, _) in acked.items() if part == p), key=lambda i: acked[i][1])
        assert [acked[i][1] for i in mine] == list(range(len(vs))), f"partition {p}: acknowledged offsets"
        assert [sent[i] for i in mine] == vs, f"partition {p}: log order differs from send order"
        assert mine == sorted(mine), f"partition {p}: not in send order"


@pytest.fixture
def proxy():
    p = CuttingProxy()
    yield p
    p.close()


@pytest.mark.parametrize("client_name", list(PRODUCERS))
def test_lost_produce_response_is_retried_exactly_once(proxy, client_name):
    with running_broker(
        {"num.partitions": str(PARTITIONS), "advertised.listeners": f"PLAINTEXT://{proxy.address}"}
    ) as b:
        proxy.start(b.port)
        sent = values(BEFORE + AFTER)
        producer = PRODUCERS[client_name](proxy.address)
        try:
            for i in range(BEFORE):
                producer.send(i, sent[i])
            producer.flush(30)
            proxy.arm()
            for i in range(BEFORE, len(sent)):
                producer.send(i, sent[i])
            acked = producer.flush(60)
        finally:
            producer.close()
        assert proxy.cut.is_set()
        check_exactly_once(b.data_dir, sent, acked, proxy)


@pytest.mark.parametrize("kill", [False, True], ids=["graceful", "kill-9"])
@pytest.mark.parametrize("client_name", list(PRODUCERS))
def test_retry_across_a_broker_restart_is_exactly_once(proxy, broker_process, client_name, kill):
    broker = broker_process({"num.partitions": str(PARTITIONS), "advertised.listeners": f"PLAINTEXT://{proxy.address}"})
    proxy.start(broker.port)
    sent = values(BEFORE + AFTER)
    producer = PRODUCERS[client_name](proxy.address)
    try:
        for i in range(BEFORE):
            producer.send(i, sent[i])
        producer.flush(30)
        proxy.arm(hold=True)  # after the cut, refuse reconnections until the broker is back
        for i in range(BEFORE, len(sent)):
            producer.send(i, sent[i])
        wait_for(proxy.cut.is_set, 30, "a Produce response to cut")
        broker.restart(kill=kill)
        assert broker.port == proxy.upstream_port
        proxy.release()
        acked = producer.flush(90)
    finally:
        producer.close()
    broker.stop()
    check_exactly_once(broker.data_dir, sent, acked, proxy)
