"""SASL/SCRAM-SHA-256 and SCRAM-SHA-512 on one broker: credentials made
with AlterUserScramCredentials by librdkafka's admin client and used by
librdkafka, kafka-python and aiokafka to log in; Describe shows them, a
deleted one no longer opens the door, they outlive a restart; Kafka's
answers to bad requests and to a forged exchange (wrong nonce, wrong
proof, garbage), each closing that connection alone."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from kafka import KafkaConsumer, KafkaProducer

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.alter_user_scram_credentials_request import (
    AlterUserScramCredentialsRequest,
    ScramCredentialDeletion,
    ScramCredentialUpsertion,
)
from pybroker.protocol.messages.describe_user_scram_credentials_request import (
    DescribeUserScramCredentialsRequest,
    UserName,
)
from pybroker.protocol.messages.sasl_authenticate_request import SaslAuthenticateRequest
from pybroker.protocol.messages.sasl_handshake_request import SaslHandshakeRequest
from pybroker.testing import running_broker

from .secured import kafka_python_sasl, librdkafka_sasl, round_trip
from .wire import Wire

WAIT_S = 30
PROPS = {
    "listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
    "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
    "connection.failed.authentication.delay.ms": "100",
}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with running_broker(PROPS, dev=True, data_dir=tmp_path_factory.mktemp("scram")) as b:
        b.sasl_port = b.broker.bound_by_listener["SASL_PLAINTEXT"][1]
        yield b


def admin(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap_servers})


def set_password(broker, user: str, password: str, mechanism=ScramMechanism.SCRAM_SHA_512, iterations=4096):
    alteration = UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, iterations), password.encode())
    client = admin(broker)  # kept alive until its futures are done
    for future in client.alter_user_scram_credentials([alteration]).values():
        future.result(WAIT_S)


def test_librdkafka_makes_credentials_and_logs_in_with_both_mechanisms(broker):
    set_password(broker, "alice", "alice-512")
    set_password(broker, "alice", "alice-256", ScramMechanism.SCRAM_SHA_256, iterations=8192)
    round_trip(librdkafka_sasl(broker.sasl_port, "SCRAM-SHA-512", "alice", "alice-512"))
    round_trip(librdkafka_sasl(broker.sasl_port, "SCRAM-SHA-256", "alice", "alice-256"))
    client = admin(broker)
    described = client.describe_user_scram_credentials(["alice"])["alice"].result(WAIT_S)
    infos = sorted((i.mechanism, i.iterations) for i in described.scram_credential_infos)
    assert infos == [(ScramMechanism.SCRAM_SHA_256, 8192), (ScramMechanism.SCRAM_SHA_512, 4096)]


def test_kafka_python_and_aiokafka_log_in_with_scram(broker):
    set_password(broker, "bob", "bob-secret")
    topic = f"scram-kp-{uuid.uuid4().hex[:8]}"
    sasl = kafka_python_sasl(broker.sasl_port, "SCRAM-SHA-512", "bob", "bob-secret")
    producer = KafkaProducer(**sasl)
    producer.send(topic, b"from kafka-python").get(timeout=WAIT_S)
    producer.close()

    async def aio():
        producer = AIOKafkaProducer(**sasl)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"from aiokafka")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", group_id=f"g-{topic}", **sasl)
        await consumer.start()
        try:
            got = []
            async with asyncio.timeout(WAIT_S):
                async for message in consumer:
                    got.append(message.value)
                    if len(got) == 2:
                        return got
        finally:
            await consumer.stop()

    assert asyncio.run(aio()) == [b"from kafka-python", b"from aiokafka"]
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=WAIT_S * 1000, **sasl)
    try:
        assert [m.value for m, _ in zip(consumer, range(2))] == [b"from kafka-python", b"from aiokafka"]
    finally:
        consumer.close()


def test_a_wrong_password_and_a_deleted_credential_are_refused(broker, caplog):
    caplog.set_level(logging.INFO, logger="pybroker.sasl")
    set_password(broker, "carol", "carol-secret")
    carol = librdkafka_sasl(broker.sasl_port, "SCRAM-SHA-512", "carol", "carol-secret")
    quick = {"socket.timeout.ms": 3000}
    with pytest.raises(KafkaException):
        AdminClient({**carol, "sasl.password": "wrong", **quick}).list_topics(timeout=5)
    assert any("failed authentication with" in r.getMessage() and "SCRAM-SHA-512" in r.getMessage()
               for r in caplog.records)
    round_trip(carol)
    deletion = UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_512)
    client = admin(broker)
    for future in client.alter_user_scram_credentials([deletion]).values():
        future.result(WAIT_S)
    with pytest.raises(KafkaException):
        AdminClient({**carol, **quick}).list_topics(timeout=5)


def raw_alter(broker, upsertions=(), deletions=()):
    w = Wire(broker.bootstrap_servers)
    try:
        w.send(AlterUserScramCredentialsRequest(upsertions=list(upsertions), deletions=list(deletions)), 0, 1)
        return {r.user: (r.error_code, r.error_message) for r in w.receive(51, 0)[1].results}
    finally:
        w.close()


def upsert(name, mechanism=2, iterations=4096):
    return ScramCredentialUpsertion(name=name, mechanism=mechanism, iterations=iterations, salt=b"salt" * 4,
                                    salted_password=b"p" * 64)


def test_alter_answers_each_user_as_kafka_does(broker):
    answers = raw_alter(
        broker,
        upsertions=[upsert("few", iterations=4095), upsert("many", iterations=16385), upsert("odd", mechanism=7),
                    upsert(""), upsert("twice"), upsert("twice"), upsert("fine")],
        deletions=[ScramCredentialDeletion(name="nobody", mechanism=1)],
    )
    assert answers == {
        "few": (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations"),
        "many": (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too many iterations"),
        "odd": (ErrorCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"),
        "": (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty"),
        "twice": (ErrorCode.DUPLICATE_RESOURCE, "A user credential cannot be altered twice in the same request"),
        "nobody": (ErrorCode.RESOURCE_NOT_FOUND, "Attempt to delete a user credential that does not exist"),
        "fine": (ErrorCode.NONE, None),
    }


def test_describe_names_users_and_refuses_unknown_and_repeated_ones(broker):
    set_password(broker, "dave", "dave-secret")
    w = Wire(broker.bootstrap_servers)
    try:
        w.send(DescribeUserScramCredentialsRequest(users=[UserName(name=n) for n in ("dave", "ghost", "x", "x")]), 0, 1)
        results = {r.user: r for r in w.receive(50, 0)[1].results}
        w.send(DescribeUserScramCredentialsRequest(users=None), 0, 2)
        everyone = [r.user for r in w.receive(50, 0)[1].results]
    finally:
        w.close()
    assert [(i.mechanism, i.iterations) for i in results["dave"].credential_infos] == [(2, 4096)]
    assert results["ghost"].error_code == ErrorCode.RESOURCE_NOT_FOUND
    assert results["x"].error_code == ErrorCode.DUPLICATE_RESOURCE
    assert everyone == sorted(everyone) and "dave" in everyone and "ghost" not in everyone


class Exchange:
    """A SCRAM-SHA-512 client by hand, to send what real clients never do."""

    def __init__(self, port: int, user: str):
        self.w = Wire(f"127.0.0.1:{port}")
        self.w.send(SaslHandshakeRequest(mechanism="SCRAM-SHA-512"), 1, 1)
        assert self.w.receive(17, 1)[1].error_code == ErrorCode.NONE
        self.first_bare = f"n={user},r=clientnonce"
        self.server_first = self.send(f"n,,{self.first_bare}".encode()).auth_bytes.decode()

    def send(self, token: bytes, correlation_id: int = 2):
        self.w.send(SaslAuthenticateRequest(auth_bytes=token), 2, correlation_id)
        return self.w.receive(36, 2)[1]

    def final(self, password: str, nonce: str | None = None) -> bytes:
        attrs = dict(a.split("=", 1) for a in self.server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.digest(salted, b"Client Key", "sha512")
        without_proof = f"c=biws,r={nonce or attrs['r']}"
        message = f"{self.first_bare},{self.server_first},{without_proof}".encode()
        signature = hmac.digest(hashlib.sha512(client_key).digest(), message, "sha512")
        proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
        return f"{without_proof},p={proof}".encode()


GENERIC = "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"


@pytest.mark.parametrize("forge", ["nonce", "proof", "garbage"])
def test_a_forged_scram_exchange_is_refused_and_closed(broker, forge):
    set_password(broker, "erin", "erin-secret")
    ex = Exchange(broker.sasl_port, "erin")
    try:
        assert ex.server_first.startswith("r=clientnonce")
        if forge == "nonce":
            token = ex.final("erin-secret", nonce="clientnonce-not-the-servers")
        elif forge == "proof":
            token = ex.final("not-erins-password")
        else:
            token = b"\xff\x00garbage,,,"
        answer = ex.send(token, 3)
        assert answer.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        assert answer.error_message.startswith("Authentication failed")
        assert ex.w.closed_by_peer()
    finally:
        ex.w.close()
    # The right proof over the same steps opens the door.
    ex = Exchange(broker.sasl_port, "erin")
    try:
        answer = ex.send(ex.final("erin-secret"), 3)
        assert answer.error_code == ErrorCode.NONE and answer.auth_bytes.startswith(b"v=")
    finally:
        ex.w.close()


def test_an_unknown_user_is_told_nothing_more_than_a_wrong_password(broker):
    w = Wire(f"127.0.0.1:{broker.sasl_port}")
    try:
        w.send(SaslHandshakeRequest(mechanism="SCRAM-SHA-512"), 1, 1)
        w.receive(17, 1)
        w.send(SaslAuthenticateRequest(auth_bytes=b"n,,n=nobody-at-all,r=abc"), 2, 2)
        answer = w.receive(36, 2)[1]
        assert (answer.error_code, answer.error_message) == (ErrorCode.SASL_AUTHENTICATION_FAILED, GENERIC)
        assert w.closed_by_peer()
    finally:
        w.close()


def test_credentials_outlive_a_restart(tmp_path):
    with running_broker(PROPS, dev=True, data_dir=tmp_path) as b:
        set_password(b, "frank", "frank-secret")
    with running_broker(PROPS, dev=True, data_dir=tmp_path) as b:
        port = b.broker.bound_by_listener["SASL_PLAINTEXT"][1]
        round_trip(librdkafka_sasl(port, "SCRAM-SHA-512", "frank", "frank-secret"))
