"""KIP-368 re-authentication with connections.max.reauth.ms: librdkafka
and kafka-python re-authenticate on their connections while producing and
lose nothing; a raw client told its session lifetime is closed once it
asks anything after it; a re-authentication as another user, or with
another mechanism, is refused as Kafka refuses it."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from confluent_kafka import Producer
from kafka import KafkaProducer

from pybroker.config import BrokerConfig
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.metadata_request import MetadataRequest
from pybroker.protocol.messages.sasl_authenticate_request import SaslAuthenticateRequest
from pybroker.protocol.messages.sasl_handshake_request import SaslHandshakeRequest
from pybroker.testing import running_broker

from .wire import Wire

WAIT_S = 30
REAUTH_MS = 1500
JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret"'
        ' user_bob="bob-secret";')


@pytest.fixture(scope="module")
def broker():
    props = {
        "listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,LONG://127.0.0.1:0",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,LONG:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN,OAUTHBEARER",
        "sasl.jaas.config": JAAS,
        "connections.max.reauth.ms": str(REAUTH_MS),
        # The listener's own, and its mechanism's: Kafka's lookup order.
        "listener.name.long.connections.max.reauth.ms": "0",
        "listener.name.long.oauthbearer.connections.max.reauth.ms": "60000",
        "connection.failed.authentication.delay.ms": "100",
    }
    with running_broker(props, dev=True) as b:
        b.sasl_port = b.broker.bound_by_listener["SASL_PLAINTEXT"][1]
        b.long_port = b.broker.bound_by_listener["LONG"][1]
        yield b


def test_the_limits_by_listener_and_mechanism():
    config = BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9093",
                           "sasl.enabled.mechanisms": "PLAIN,OAUTHBEARER", "sasl.jaas.config": JAAS,
                           "connections.max.reauth.ms": "7",
                           "listener.name.sasl_plaintext.plain.connections.max.reauth.ms": "9"})
    assert config.sasl_reauth_ms == {"SASL_PLAINTEXT": {"PLAIN": 9, "OAUTHBEARER": 7}}
    assert not config.ignored


class Session:
    def __init__(self, port: int):
        self.w = Wire(f"127.0.0.1:{port}")
        self.correlation = 0

    def call(self, request, version: int):
        self.correlation += 1
        self.w.send(request, version, self.correlation)
        return self.w.receive(request.API_KEY, version)[1]

    def login(self, user: str, mechanism: str = "PLAIN"):
        assert self.call(SaslHandshakeRequest(mechanism=mechanism), 1).error_code == ErrorCode.NONE
        return self.call(SaslAuthenticateRequest(auth_bytes=f"\x00{user}\x00{user}-secret".encode()), 1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.w.close()


def test_a_session_that_lapses_is_closed_at_its_next_request(broker):
    with Session(broker.sasl_port) as s:
        answer = s.login("alice")
        assert (answer.error_code, answer.session_lifetime_ms) == (ErrorCode.NONE, REAUTH_MS)
        started = time.monotonic()
        while True:  # answered until the session is over, then closed unanswered
            s.correlation += 1
            s.w.send(MetadataRequest(topics=[]), 1, s.correlation)
            if s.w.closed_by_peer():
                break
            assert time.monotonic() - started < REAUTH_MS / 1000 + 5, "never closed"
        assert time.monotonic() - started >= REAUTH_MS / 1000


def test_reauthentication_renews_the_session_and_keeps_the_connection(broker):
    with Session(broker.sasl_port) as s:
        assert s.login("alice").error_code == ErrorCode.NONE
        deadline = time.monotonic() + REAUTH_MS / 1000 * 3
        renewals = 0
        while time.monotonic() < deadline:
            assert s.call(MetadataRequest(topics=[]), 1).brokers
            # At most once a second; sooner is answered ILLEGAL_SASL_STATE.
            handshake = s.call(SaslHandshakeRequest(mechanism="PLAIN"), 1)
            if handshake.error_code == ErrorCode.ILLEGAL_SASL_STATE:
                continue
            answer = s.call(SaslAuthenticateRequest(auth_bytes=b"\x00alice\x00alice-secret"), 1)
            assert (answer.error_code, answer.session_lifetime_ms) == (ErrorCode.NONE, REAUTH_MS)
            renewals += 1
        assert renewals >= 2
        assert s.call(MetadataRequest(topics=[]), 1).brokers


def test_a_reauthentication_as_another_user_is_refused(broker):
    with Session(broker.sasl_port) as s:
        assert s.login("alice").error_code == ErrorCode.NONE
        answer = s.login("bob")
        assert answer.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        assert answer.error_message == "Cannot change principals during re-authentication from User.alice: User.bob"
        assert s.w.closed_by_peer()


def test_a_reauthentication_with_another_mechanism_is_refused(broker):
    with Session(broker.sasl_port) as s:
        assert s.login("alice").error_code == ErrorCode.NONE
        assert s.call(SaslHandshakeRequest(mechanism="OAUTHBEARER"), 1).error_code == ErrorCode.NONE
        s.w.send(SaslAuthenticateRequest(auth_bytes=b"n,,\x01auth=Bearer x.y.\x01\x01"), 1, 99)
        assert s.w.closed_by_peer()  # Kafka closes without an answer


def test_without_an_expiry_a_handshake_after_authentication_is_illegal(broker):
    """The LONG listener: no limit for PLAIN, a long one for OAUTHBEARER."""
    with Session(broker.long_port) as s:
        answer = s.login("alice")
        assert (answer.error_code, answer.session_lifetime_ms) == (ErrorCode.NONE, 0)
        assert s.call(SaslHandshakeRequest(mechanism="PLAIN"), 1).error_code == ErrorCode.ILLEGAL_SASL_STATE
        again = s.call(SaslAuthenticateRequest(auth_bytes=b"\x00alice\x00alice-secret"), 1)
        assert (again.error_code, again.error_message) == (
            ErrorCode.ILLEGAL_SASL_STATE, "SaslAuthenticate request received after successful authentication")
        assert s.call(MetadataRequest(topics=[]), 1).brokers  # still open


def produce_for(produce, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        produce()


def test_librdkafka_reauthenticates_while_producing_and_loses_nothing(broker, caplog):
    caplog.set_level(logging.DEBUG, logger="pybroker.sasl")
    topic = f"reauth-rd-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{broker.sasl_port}", "security.protocol": "SASL_PLAINTEXT",
                         "sasl.mechanisms": "PLAIN", "sasl.username": "alice", "sasl.password": "alice-secret",
                         "linger.ms": 5})
    errors, delivered = [], []

    def report(err, msg):
        (errors if err else delivered).append(err or msg.offset())

    producer.produce(topic, value=b"warm-up")  # its connections made
    assert producer.flush(WAIT_S) == 0
    accepted = broker.broker.server.accepted
    sent = 0

    def produce():
        nonlocal sent
        producer.produce(topic, value=str(sent).encode(), on_delivery=report)
        sent += 1
        producer.poll(0.01)

    produce_for(produce, REAUTH_MS / 1000 * 4)
    assert producer.flush(WAIT_S) == 0
    assert errors == [] and len(delivered) == sent
    assert sorted(delivered) == list(range(1, sent + 1))
    # Re-authenticated on the same connections: none was closed and made again.
    assert broker.broker.server.accepted == accepted
    assert sum("re-authenticated as User:alice" in r.getMessage() for r in caplog.records) >= 2


def test_kafka_python_reauthenticates_while_producing(broker):
    topic = f"reauth-kp-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{broker.sasl_port}", security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="PLAIN", sasl_plain_username="bob", sasl_plain_password="bob-secret")
    try:
        producer.send(topic, b"first").get(timeout=WAIT_S)
        accepted = broker.broker.server.accepted
        futures = []
        produce_for(lambda: futures.append(producer.send(topic, b"more")) or time.sleep(0.005),
                    REAUTH_MS / 1000 * 3)
        offsets = [f.get(timeout=WAIT_S).offset for f in futures]
        assert offsets == list(range(1, len(futures) + 1))
        assert broker.broker.server.accepted == accepted
    finally:
        producer.close()

