"""Client quotas with real clients over real sockets: librdkafka and
kafka-python producers over a producer_byte_rate quota are told the
throttle time and fall to about the quota; a consumer over
consumer_byte_rate too; a user's quota (SASL/PLAIN) beats its client
id's; request_percentage mutes a connection that asks too much; the
quotas are stored, described and survive a restart.

Rates are measured with generous bounds (0.5x to 2x the quota over a few
seconds): a bound, not a speed test. The brokers measure over two 1 s
windows (quota.window.num=2) so that a client's first burst, which
Kafka spreads over all windows but one, is short."""

from __future__ import annotations

import json
import time
import uuid
from collections import deque

import pytest
from confluent_kafka import Consumer, Producer
from kafka import KafkaProducer

from pybroker.protocol.messages.alter_client_quotas_request import (
    AlterClientQuotasRequest,
    EntityData,
    EntryData,
    OpData,
)
from pybroker.protocol.messages.describe_client_quotas_request import ComponentData, DescribeClientQuotasRequest
from pybroker.protocol.messages.metadata_request import MetadataRequest
from pybroker.testing import running_broker

from .wire import Wire

WAIT_S = 30
QUOTA = 200_000  # bytes per second
JAAS = (
    'org.apache.kafka.common.security.plain.PlainLoginModule required'
    ' user_alice="alice-secret" user_bob="bob-secret";'
)
QUICK_WINDOWS = {"quota.window.num": "2"}


@pytest.fixture(scope="module")
def broker():
    props = {
        "listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
        "sasl.enabled.mechanisms": "PLAIN",
        "sasl.jaas.config": JAAS,
        **QUICK_WINDOWS,
    }
    with running_broker(props, dev=True) as b:
        b.sasl_port = b.broker.bound_by_listener["SASL_PLAINTEXT"][1]
        yield b


def entity(user=..., client=...) -> list[EntityData]:
    """``...``: no such component; None: the default."""
    parts = []
    if user is not ...:
        parts.append(EntityData(entity_type="user", entity_name=user))
    if client is not ...:
        parts.append(EntityData(entity_type="client-id", entity_name=client))
    return parts


def alter(bootstrap: str, *entries, validate_only: bool = False, version: int = 1):
    """entries: (entity parts, {key: value or None to remove})."""
    wire = Wire(bootstrap)
    try:
        req = AlterClientQuotasRequest(validate_only=validate_only, entries=[
            EntryData(entity=parts, ops=[OpData(key=k, value=0.0 if v is None else float(v), remove=v is None)
                                         for k, v in ops.items()])
            for parts, ops in entries])
        wire.send(req, version, 1)
        return wire.receive(49, version)[1]
    finally:
        wire.close()


def describe(bootstrap: str, *components, strict: bool = False, version: int = 1):
    """components: (entity type, match type, match)."""
    wire = Wire(bootstrap)
    try:
        req = DescribeClientQuotasRequest(strict=strict, components=[
            ComponentData(entity_type=t, match_type=m, match=n) for t, m, n in components])
        wire.send(req, version, 1)
        return wire.receive(48, version)[1]
    finally:
        wire.close()


def listed(response) -> dict:
    """{((type, name), ...): {key: value}} of a DescribeClientQuotas answer."""
    return {tuple((e.entity_type, e.entity_name) for e in entry.entity): {v.key: v.value for v in entry.values}
            for entry in response.entries}


def set_quota(bootstrap: str, parts, **ops) -> None:
    response = alter(bootstrap, (parts, ops))
    assert [e.error_code for e in response.entries] == [0]


def produce_rate(conf: dict, seconds: float = 5.0, skip: float = 1.0, topic: str | None = None) -> tuple[float, int]:
    """Produce 1 KB records as fast as the producer's 1 MiB queue takes
    them for ``seconds``; the bytes acknowledged per second after the
    first ``skip`` seconds, and the largest throttle time it reported."""
    topic = topic or f"quota-{uuid.uuid4().hex[:8]}"
    throttles = [0]

    def stats(text):
        for b in json.loads(text)["brokers"].values():
            throttles.append(b["throttle"]["max"])

    producer = Producer({**conf, "linger.ms": 5, "batch.size": 65536, "queue.buffering.max.kbytes": 1024,
                         "statistics.interval.ms": 200, "stats_cb": stats})
    acked: list[tuple[float, int]] = []

    def delivered(err, msg):
        if err is None:
            acked.append((time.monotonic(), len(msg.value())))

    value = b"x" * 1000
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            producer.produce(topic, value, on_delivery=delivered)
        except BufferError:
            producer.poll(0.05)
        producer.poll(0)
    producer.poll(0.5)
    producer.purge()
    producer.flush(5)
    done = sum(n for t, n in acked if start + skip <= t < start + seconds)
    return done / (seconds - skip), max(throttles)


def within(rate: float, quota: float) -> bool:
    return 0.5 * quota <= rate <= 2 * quota


# -- AlterClientQuotas and DescribeClientQuotas ------------------------------


def test_alter_then_describe_with_every_match_type(broker):
    bs = broker.bootstrap_servers
    response = alter(
        bs,
        (entity(user="ann"), {"producer_byte_rate": 1024, "request_percentage": 50.5}),
        (entity(user=None), {"consumer_byte_rate": 2048}),
        (entity(client="app"), {"producer_byte_rate": 4096}),
        (entity(user="ann", client="app"), {"controller_mutation_rate": 10}),
        (entity(user=None, client=None), {"producer_byte_rate": 8192}),
    )
    assert [e.error_code for e in response.entries] == [0] * 5
    assert [[(p.entity_type, p.entity_name) for p in e.entity] for e in response.entries][:2] == [
        [("user", "ann")], [("user", None)]]
    every = listed(describe(bs))
    assert every[(("user", "ann"),)] == {"producer_byte_rate": 1024.0, "request_percentage": 50.5}
    assert every[(("user", None),)] == {"consumer_byte_rate": 2048.0}
    assert every[(("client-id", "app"),)] == {"producer_byte_rate": 4096.0}
    assert every[(("user", "ann"), ("client-id", "app"))] == {"controller_mutation_rate": 10.0}
    assert every[(("user", None), ("client-id", None))] == {"producer_byte_rate": 8192.0}
    # Exact user, any client id or none (not strict).
    found = listed(describe(bs, ("user", 0, "ann")))
    assert set(found) == {(("user", "ann"),), (("user", "ann"), ("client-id", "app"))}
    # ... strict: the user alone.
    assert set(listed(describe(bs, ("user", 0, "ann"), strict=True))) == {(("user", "ann"),)}
    # The default user.
    assert set(listed(describe(bs, ("user", 1, None), strict=True))) == {(("user", None),)}
    # Any named client id, with any user or none.
    found = listed(describe(bs, ("client-id", 2, None)))
    assert (("client-id", "app"),) in found and (("user", "ann"), ("client-id", "app")) in found
    assert (("user", "ann"),) not in found
    # Both types given, strict: only user+client entities.
    found = listed(describe(bs, ("user", 2, None), ("client-id", 2, None), strict=True))
    assert set(found) >= {(("user", "ann"), ("client-id", "app")), (("user", None), ("client-id", None))}
    assert all(len(k) == 2 for k in found)
    # Gone again (the defaults would hold every other test's clients back).
    response = alter(
        bs,
        (entity(user="ann"), {"producer_byte_rate": None, "request_percentage": None}),
        (entity(user=None), {"consumer_byte_rate": None}),
        (entity(client="app"), {"producer_byte_rate": None}),
        (entity(user="ann", client="app"), {"controller_mutation_rate": None}),
        (entity(user=None, client=None), {"producer_byte_rate": None}),
    )
    assert [e.error_code for e in response.entries] == [0] * 5
    assert listed(describe(bs)) == {}


def test_describe_refusals(broker):
    bs = broker.bootstrap_servers
    response = describe(bs, ("user", 0, "a"), ("user", 0, "b"))
    assert response.error_code == 42 and response.entries is None
    assert describe(bs, ("", 0, "a")).error_code == 42
    assert describe(bs, ("tenant", 0, "a")).error_code == 35
    assert describe(bs, ("ip", 2, None), ("user", 2, None)).error_code == 42
    assert describe(bs, ("ip", 2, None)).entries == []
    # A user's SCRAM credential is not a quota: never listed.
    assert describe(bs, ("user", 0, "nobody"), version=0).entries == []


def test_alter_refusals_and_validate_only(broker):
    bs = broker.bootstrap_servers
    response = alter(
        bs,
        (entity(client="v"), {"unknown_key": 1}),
        (entity(client="v"), {"producer_byte_rate": 10.5}),
        (entity(client="v"), {"producer_byte_rate": 0}),
        (entity(client="v"), {"request_percentage": -1}),
        ([], {"producer_byte_rate": 1}),
        (entity(user=""), {"producer_byte_rate": 1}),
        ([EntityData(entity_type="tenant", entity_name="x")], {"producer_byte_rate": 1}),
        (entity(client="kept"), {"producer_byte_rate": 5}),
    )
    codes = [e.error_code for e in response.entries]
    assert codes == [42] * 7 + [0]
    assert response.entries[0].error_message == "Invalid configuration key unknown_key"
    assert response.entries[1].error_message == "Configuration producer_byte_rate must be a LONG value"
    assert listed(describe(bs, ("client-id", 0, "kept")))[(("client-id", "kept"),)] == {"producer_byte_rate": 5.0}
    assert (("client-id", "v"),) not in listed(describe(bs))
    # validate_only: checked, not stored.
    response = alter(bs, (entity(client="dry"), {"producer_byte_rate": 7}), validate_only=True, version=0)
    assert [e.error_code for e in response.entries] == [0]
    assert listed(describe(bs, ("client-id", 0, "dry"))) == {}
    # Removing the last key leaves the entity without quotas: not listed.
    set_quota(bs, entity(client="kept"), producer_byte_rate=None)
    assert listed(describe(bs, ("client-id", 0, "kept"))) == {}


# -- enforcement ----------------------------------------------------------------


def test_librdkafka_producer_falls_to_its_client_id_quota(broker):
    set_quota(broker.bootstrap_servers, entity(client="slow-rdkafka"), producer_byte_rate=QUOTA)
    rate, throttle = produce_rate({"bootstrap.servers": broker.bootstrap_servers, "client.id": "slow-rdkafka"})
    assert throttle > 0
    assert within(rate, QUOTA), rate


def test_kafka_python_producer_falls_to_its_client_id_quota(broker):
    set_quota(broker.bootstrap_servers, entity(client="slow-python"), producer_byte_rate=QUOTA)
    topic = f"quota-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, client_id="slow-python", linger_ms=5,
                             batch_size=65536, max_block_ms=60_000)
    acked: list[tuple[float, int]] = []
    value = b"x" * 1000
    pending: deque = deque()
    start = time.monotonic()
    try:
        while time.monotonic() - start < 5:
            if len(pending) >= 1000:  # about the 1 MiB queue librdkafka is given
                pending.popleft().get(timeout=WAIT_S)
            future = producer.send(topic, value)
            future.add_callback(lambda _md: acked.append((time.monotonic(), 1000)))
            pending.append(future)
        producer.flush(WAIT_S)
        metrics = producer.metrics()
    finally:
        producer.close(5)
    throttle = max((v for group in metrics.values() for k, v in group.items() if k == "throttle-time-max"),
                   default=0)
    assert throttle > 0
    done = sum(n for t, n in acked if start + 1 <= t < start + 5)
    assert within(done / 4, QUOTA), done / 4


def test_a_consumer_falls_to_its_consumer_byte_rate(broker):
    bs = broker.bootstrap_servers
    topic = f"quota-{uuid.uuid4().hex[:8]}"
    # Batches well under what one window allows: a larger one could never
    # be fetched (Kafka's throttled fetch is answered empty, then retried).
    producer = Producer({"bootstrap.servers": bs, "linger.ms": 5, "batch.size": 16384})
    for _ in range(3000):
        producer.produce(topic, b"y" * 1000)
        producer.poll(0)
    assert producer.flush(WAIT_S) == 0
    set_quota(bs, entity(client="slow-reader"), consumer_byte_rate=QUOTA)
    throttles = [0]

    def stats(text):
        for b in json.loads(text)["brokers"].values():
            throttles.append(b["throttle"]["max"])

    consumer = Consumer({"bootstrap.servers": bs, "client.id": "slow-reader", "group.id": f"g-{topic}",
                         "auto.offset.reset": "earliest", "fetch.max.bytes": 65536, "message.max.bytes": 65536,
                         "max.partition.fetch.bytes": 65536, "statistics.interval.ms": 200, "stats_cb": stats})
    consumer.subscribe([topic])
    got: list[tuple[float, int]] = []
    try:
        deadline = time.monotonic() + WAIT_S
        while not got and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append((time.monotonic(), len(msg.value())))
        start = got[0][0]
        while time.monotonic() - start < 5:
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                got.append((time.monotonic(), len(msg.value())))
    finally:
        consumer.close()
    done = sum(n for t, n in got if start + 1 <= t < start + 5)
    assert max(throttles) > 0
    assert within(done / 4, QUOTA), done / 4


def test_a_users_quota_beats_its_client_ids(broker):
    bs = broker.bootstrap_servers
    # alice's client id has a large quota of its own; alice (level 3)
    # comes before a client id (level 7).
    set_quota(bs, entity(client="fast"), producer_byte_rate=50 * QUOTA)
    set_quota(bs, entity(user="alice"), producer_byte_rate=QUOTA)
    conf = {"bootstrap.servers": f"127.0.0.1:{broker.sasl_port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "PLAIN", "client.id": "fast"}
    rate, throttle = produce_rate({**conf, "sasl.username": "alice", "sasl.password": "alice-secret"})
    assert throttle > 0 and within(rate, QUOTA), rate
    # alice's own client id quota (level 1) beats her user quota.
    set_quota(bs, entity(user="alice", client="fast"), producer_byte_rate=2 * QUOTA)
    rate, _ = produce_rate({**conf, "sasl.username": "alice", "sasl.password": "alice-secret"})
    assert within(rate, 2 * QUOTA), rate


def test_request_percentage_mutes_a_connection_that_asks_too_much(broker):
    set_quota(broker.bootstrap_servers, entity(client="busy"), request_percentage=0.0001)
    wire = Wire(broker.bootstrap_servers)
    try:
        wire.send(MetadataRequest(topics=None), 12, 1, client_id="busy")
        throttle = wire.receive(3, 12)[1].throttle_time_ms
        # Over by far, but the request-time quota holds back one window at most.
        assert 0 < throttle <= 1000
        sent = time.monotonic()
        wire.send(MetadataRequest(topics=None), 12, 2, client_id="busy")
        assert wire.receive(3, 12)[0].correlation_id == 2
        assert time.monotonic() - sent >= throttle / 1000 * 0.9
    finally:
        wire.close()
    # Another client id on the same broker is not held back.
    wire = Wire(broker.bootstrap_servers)
    try:
        wire.send(MetadataRequest(topics=None), 12, 1, client_id="idle")
        assert wire.receive(3, 12)[1].throttle_time_ms == 0
    finally:
        wire.close()


def test_quotas_survive_a_restart(tmp_path):
    props = {**QUICK_WINDOWS}
    with running_broker(props, data_dir=tmp_path) as b:
        set_quota(b.bootstrap_servers, entity(user="carol", client=None), producer_byte_rate=QUOTA)
        set_quota(b.bootstrap_servers, entity(client="kept"), consumer_byte_rate=QUOTA)
    with running_broker(props, data_dir=tmp_path) as b:
        found = listed(describe(b.bootstrap_servers))
        assert found == {(("user", "carol"), ("client-id", None)): {"producer_byte_rate": float(QUOTA)},
                         (("client-id", "kept"),): {"consumer_byte_rate": float(QUOTA)}}
        assert b.broker.quotas.active
