"""SASL/PLAIN on SASL_PLAINTEXT and SASL_SSL listeners, driven by
librdkafka and kafka-python: users from a JAAS config (global or the
listener's own), Kafka's answers to a wrong password, an unknown
mechanism and a request sent before authenticating, each closing that
connection alone, after the failed-authentication delay."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer

from pybroker.config import BrokerConfig, ConfigError
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.metadata_request import MetadataRequest
from pybroker.protocol.messages.sasl_authenticate_request import SaslAuthenticateRequest
from pybroker.protocol.messages.sasl_handshake_request import SaslHandshakeRequest
from pybroker.testing import running_broker

from .secured import kafka_python_sasl, librdkafka_sasl, round_trip
from .wire import Wire

WAIT_S = 30
JAAS = (
    'org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret"'
    ' user_admin="admin-secret" user_alice="alice-secret";'
)


@pytest.fixture(scope="module")
def broker(certs):
    props = {
        "listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
        "sasl.enabled.mechanisms": "PLAIN",
        # The SASL_SSL listener has users of its own; the other takes the global ones.
        "sasl.jaas.config": JAAS,
        "listener.name.sasl_ssl.plain.sasl.jaas.config":
            'org.apache.kafka.common.security.plain.PlainLoginModule required user_bob="bob-secret";',
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.server.both),
        "connection.failed.authentication.delay.ms": "300",
    }
    with running_broker(props, dev=True) as b:
        b.sasl_port = b.broker.bound_by_listener["SASL_PLAINTEXT"][1]
        b.sasl_ssl_port = b.broker.bound_by_listener["SASL_SSL"][1]
        yield b


def test_librdkafka_with_sasl_plain(broker):
    round_trip(librdkafka_sasl(broker.sasl_port, "PLAIN", "alice", "alice-secret"))


def test_librdkafka_with_sasl_ssl_and_the_listeners_own_users(broker, certs):
    conf = librdkafka_sasl(broker.sasl_ssl_port, "PLAIN", "bob", "bob-secret",
                           **{"security.protocol": "SASL_SSL", "ssl.ca.location": str(certs.ca.path)})
    round_trip(conf)
    meta = AdminClient(conf).list_topics(timeout=WAIT_S)
    assert [b.port for b in meta.brokers.values()] == [broker.sasl_ssl_port]
    # alice is a user of the other listener only.
    with pytest.raises(KafkaException):
        AdminClient({**conf, "sasl.username": "alice", "sasl.password": "alice-secret"}).list_topics(timeout=5)


def test_kafka_python_with_sasl_plain(broker):
    topic = f"sasl-kp-{uuid.uuid4().hex[:8]}"
    sasl = kafka_python_sasl(broker.sasl_port, "PLAIN", "admin", "admin-secret")
    producer = KafkaProducer(**sasl)
    producer.send(topic, b"kafka-python, authenticated").get(timeout=WAIT_S)
    producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=WAIT_S * 1000, **sasl)
    try:
        assert next(iter(consumer)).value == b"kafka-python, authenticated"
    finally:
        consumer.close()


def test_a_wrong_password_is_refused_after_the_delay_and_logged(broker, caplog):
    caplog.set_level(logging.INFO, logger="pybroker.sasl")
    w = Wire(f"127.0.0.1:{broker.sasl_port}")
    try:
        w.send(SaslHandshakeRequest(mechanism="PLAIN"), 1, 1)
        assert w.receive(SaslHandshakeRequest.API_KEY, 1)[1].error_code == ErrorCode.NONE
        started = time.monotonic()
        w.send(SaslAuthenticateRequest(auth_bytes=b"\x00alice\x00wrong"), 2, 2)
        answer = w.receive(SaslAuthenticateRequest.API_KEY, 2)[1]
        assert time.monotonic() - started >= 0.3  # connection.failed.authentication.delay.ms
        assert answer.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        assert answer.error_message == "Authentication failed: Invalid username or password"
        assert w.sock.recv(1) == b""  # then closed
    finally:
        w.close()
    assert [r.getMessage() for r in caplog.records if "failed authentication with" in r.getMessage()]
    wrong = librdkafka_sasl(broker.sasl_port, "PLAIN", "alice", "nope", **{"socket.timeout.ms": 3000})
    with pytest.raises(KafkaException):
        AdminClient(wrong).list_topics(timeout=5)
    round_trip(librdkafka_sasl(broker.sasl_port, "PLAIN", "alice", "alice-secret"))  # the others carry on


def test_a_request_before_authentication_closes_the_connection(broker):
    w = Wire(f"127.0.0.1:{broker.sasl_port}")
    try:
        w.send(MetadataRequest(topics=None), 1, 1)
        assert w.frame() is None  # closed, unanswered
    finally:
        w.close()


def test_an_unknown_mechanism_is_refused_with_the_enabled_ones(broker):
    w = Wire(f"127.0.0.1:{broker.sasl_port}")
    try:
        w.send(SaslHandshakeRequest(mechanism="SCRAM-SHA-512"), 1, 1)
        answer = w.receive(SaslHandshakeRequest.API_KEY, 1)[1]
        assert (answer.error_code, answer.mechanisms) == (ErrorCode.UNSUPPORTED_SASL_MECHANISM, ["PLAIN"])
        assert w.sock.recv(1) == b""
    finally:
        w.close()


def test_sasl_requests_on_a_plaintext_listener_are_illegal(broker):
    w = Wire(broker.bootstrap_servers)
    try:
        w.send(SaslHandshakeRequest(mechanism="PLAIN"), 1, 1)
        assert w.receive(SaslHandshakeRequest.API_KEY, 1)[1].error_code == ErrorCode.ILLEGAL_SASL_STATE
    finally:
        w.close()


@pytest.mark.parametrize(
    "props,message",
    [
        ({}, "SASL mechanism GSSAPI is not supported"),
        ({"sasl.enabled.mechanisms": "PLAIN"}, "no JAAS configuration for PLAIN"),
        ({"sasl.enabled.mechanisms": "PLAIN", "sasl.jaas.config": "PlainLoginModule required user_a=b"},
         "must end with ';'"),
        ({"sasl.enabled.mechanisms": "PLAIN", "sasl.jaas.config": "x.Other required;"}, "no org.apache.kafka"),
    ],
)
def test_sasl_configuration_problems_stop_the_start(props, message):
    with pytest.raises(ConfigError, match=message):
        BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9093", **props})


def test_aiokafka_with_sasl_ssl(broker, certs):
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context

    topic = f"sasl-aio-{uuid.uuid4().hex[:8]}"
    settings = kafka_python_sasl(broker.sasl_ssl_port, "PLAIN", "bob", "bob-secret", security_protocol="SASL_SSL",
                                 ssl_context=create_ssl_context(cafile=str(certs.ca.path)))

    async def run() -> bytes:
        producer = AIOKafkaProducer(**settings)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"aiokafka over SASL_SSL")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **settings)
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), WAIT_S)
        finally:
            await consumer.stop()
        return message.value

    assert asyncio.run(run()) == b"aiokafka over SASL_SSL"


def test_a_flood_of_failed_logins_costs_the_guesser_not_the_others(broker):
    """Twenty wrong passwords at once: each waits out the failure delay on
    its own connection, while a client with the right one is served."""
    import threading

    def guess(i: int, times: list) -> None:
        w = Wire(f"127.0.0.1:{broker.sasl_port}")
        try:
            w.send(SaslHandshakeRequest(mechanism="PLAIN"), 1, 1)
            w.receive(SaslHandshakeRequest.API_KEY, 1)
            started = time.monotonic()
            w.send(SaslAuthenticateRequest(auth_bytes=f"\x00alice\x00guess-{i}".encode()), 2, 2)
            answer = w.receive(SaslAuthenticateRequest.API_KEY, 2)[1]
            times.append((answer.error_code, time.monotonic() - started))
        finally:
            w.close()

    times: list = []
    guessers = [threading.Thread(target=guess, args=(i, times)) for i in range(20)]
    for t in guessers:
        t.start()
    round_trip(librdkafka_sasl(broker.sasl_port, "PLAIN", "alice", "alice-secret"))
    for t in guessers:
        t.join(WAIT_S)
    assert len(times) == 20
    assert all(code == ErrorCode.SASL_AUTHENTICATION_FAILED and waited >= 0.3 for code, waited in times)


def test_kafkajs_with_sasl_ssl(broker, certs):
    import shutil
    import subprocess
    from pathlib import Path

    compat = Path(__file__).parents[2] / "compat" / "kafkajs"
    node = shutil.which("node")
    assert node and (compat / "node_modules" / "kafkajs").exists(), "KafkaJS: run npm ci in compat/kafkajs"
    env = {"PATH": "/usr/bin:/bin", "BROKERS": f"127.0.0.1:{broker.sasl_ssl_port}",
           "TOPIC": f"sasl-js-{uuid.uuid4().hex[:8]}", "CA_FILE": str(certs.ca.path), "SASL_USER": "bob",
           "SASL_PASSWORD": "bob-secret", "KAFKAJS_NO_PARTITIONER_WARNING": "1"}
    done = subprocess.run([node, "secured-roundtrip.js"], cwd=compat, env=env, capture_output=True, text=True,
                          timeout=WAIT_S + 30, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "kafkajs over SASL_SSL"
