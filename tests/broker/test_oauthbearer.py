"""SASL/OAUTHBEARER on one broker with three SASL_PLAINTEXT listeners:
Kafka's unsecured tokens (the default validator), signed tokens checked
against a JWKS file, and against a JWKS served over HTTP by a local
server. librdkafka, kafka-python, aiokafka and KafkaJS log in; Kafka's
exchange for a refused token (an error JSON, the client's ``\\x01``, then
the failure) and its answers to garbage, a truncated GS2 header, an
unsigned token where signatures are required, a bad signature, an
unknown key, an expired token and another audience, each logged once."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import logging
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer
from kafka.net.sasl.oauth import AbstractTokenProvider

from pybroker.broker import ListenerError
from pybroker.config import BrokerConfig, ConfigError
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.metadata_request import MetadataRequest
from pybroker.protocol.messages.sasl_authenticate_request import SaslAuthenticateRequest
from pybroker.protocol.messages.sasl_handshake_request import SaslHandshakeRequest
from pybroker.testing import running_broker

from .oauth_tokens import SigningKey, claims, client_message, jwks, signed, unsecured
from .secured import round_trip
from .wire import Wire

WAIT_S = 30
MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
HANDLER = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
AUDIENCE = "pybroker"
ISSUER = "https://issuer.example"
INVALID = '{"status":"invalid_token"}'
GENERIC = "Authentication failed during authentication due to invalid credentials with SASL mechanism OAUTHBEARER"


class Provider:
    """Keys, and a JWKS served over HTTP on 127.0.0.1 that a test may change."""

    def __init__(self):
        self.rsa = SigningKey("rsa-1", "RS256")
        self.ec = SigningKey("ec-1", "ES256")
        self.pss = SigningKey("pss-1", "PS384")
        self.ec384 = SigningKey("ec-2", "ES384")
        self.document = jwks(self.rsa, self.ec, self.pss, self.ec384)
        self.fetches = 0
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                provider.fetches += 1
                body = provider.document.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def provider():
    p = Provider()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def broker(provider, tmp_path_factory):
    jwks_file = tmp_path_factory.mktemp("jwks") / "jwks.json"
    jwks_file.write_text(jwks(provider.rsa, provider.ec))
    props = {
        "listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SIGNED://127.0.0.1:0,FETCHED://127.0.0.1:0",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SIGNED:SASL_PLAINTEXT,"
                                          "FETCHED:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "sasl.jaas.config": f"{MODULE} required;",
        "connection.failed.authentication.delay.ms": "100",
        # Signed tokens, keys from a file.
        "listener.name.signed.oauthbearer.sasl.server.callback.handler.class": HANDLER,
        "listener.name.signed.oauthbearer.sasl.oauthbearer.jwks.endpoint.url": jwks_file.as_uri(),
        "listener.name.signed.sasl.oauthbearer.expected.audience": AUDIENCE,
        "listener.name.signed.sasl.oauthbearer.expected.issuer": ISSUER,
        # Signed tokens, keys over HTTP; Kafka's older class name.
        "listener.name.fetched.oauthbearer.sasl.server.callback.handler.class":
            "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerValidatorCallbackHandler",
        "listener.name.fetched.oauthbearer.sasl.oauthbearer.jwks.endpoint.url": provider.url,
        "listener.name.fetched.sasl.oauthbearer.expected.audience": AUDIENCE,
    }
    with running_broker(props, dev=True) as b:
        ports = b.broker.bound_by_listener
        b.unsecured_port = ports["SASL_PLAINTEXT"][1]
        b.signed_port = ports["SIGNED"][1]
        b.fetched_port = ports["FETCHED"][1]
        yield b


def librdkafka(port: int, **more) -> dict:
    return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "OAUTHBEARER", **more}


def token_cb(make):
    """confluent-kafka's oauth_cb: (token, expiry in seconds since the epoch, principal, extensions)."""
    def cb(_config):
        token = make()
        body = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        return token, float(body["exp"]), body.get("sub", "alice"), {}
    return cb


def test_librdkafka_with_unsecured_tokens(broker):
    round_trip(librdkafka(broker.unsecured_port, **{
        "enable.sasl.oauthbearer.unsecure.jwt": True,
        "sasl.oauthbearer.config": "principal=alice scope=read,write lifeSeconds=600",
    }))


@pytest.mark.parametrize("alg", ["rsa", "ec"])
def test_librdkafka_with_signed_tokens_from_a_jwks_file(broker, provider, alg):
    key = getattr(provider, alg)
    make = lambda: signed(key, claims("alice", aud=AUDIENCE, iss=ISSUER))
    round_trip(librdkafka(broker.signed_port, oauth_cb=token_cb(make)))


def test_librdkafka_with_signed_tokens_from_an_http_jwks(broker, provider):
    make = lambda: signed(provider.pss, claims("carol", aud=[AUDIENCE, "other"]))
    round_trip(librdkafka(broker.fetched_port, oauth_cb=token_cb(make)))
    assert provider.fetches >= 1


class Tokens(AbstractTokenProvider):
    def __init__(self, make):
        super().__init__()
        self.make = make

    def token(self):
        return self.make()


def test_kafka_python_with_signed_tokens(broker, provider):
    topic = f"oauth-kp-{uuid.uuid4().hex[:8]}"
    sasl = {"bootstrap_servers": f"127.0.0.1:{broker.fetched_port}", "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "OAUTHBEARER",
            "sasl_oauth_token_provider": Tokens(lambda: signed(provider.ec384, claims("dave", aud=AUDIENCE)))}
    producer = KafkaProducer(**sasl)
    producer.send(topic, b"kafka-python, signed").get(timeout=WAIT_S)
    producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=WAIT_S * 1000, **sasl)
    try:
        assert next(iter(consumer)).value == b"kafka-python, signed"
    finally:
        consumer.close()


def test_aiokafka_with_unsecured_and_signed_tokens(broker, provider):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.abc import AbstractTokenProvider as AioTokenProvider

    class AioTokens(AioTokenProvider):
        def __init__(self, make):
            self.make = make

        async def token(self):
            return self.make()

    topic = f"oauth-aio-{uuid.uuid4().hex[:8]}"

    def settings(port, make):
        return {"bootstrap_servers": f"127.0.0.1:{port}", "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "OAUTHBEARER", "sasl_oauth_token_provider": AioTokens(make)}

    async def run():
        producer = AIOKafkaProducer(**settings(broker.unsecured_port, lambda: unsecured(claims("erin"))))
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"aiokafka, unsecured")
        finally:
            await producer.stop()
        make = lambda: signed(provider.rsa, claims("erin", aud=AUDIENCE, iss=ISSUER))
        consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **settings(broker.signed_port, make))
        await consumer.start()
        try:
            return (await asyncio.wait_for(consumer.getone(), WAIT_S)).value
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == b"aiokafka, unsecured"


def test_kafkajs_with_signed_tokens(broker, provider):
    compat = Path(__file__).parents[2] / "compat" / "kafkajs"
    node = shutil.which("node")
    assert node and (compat / "node_modules" / "kafkajs").exists(), "KafkaJS: run npm ci in compat/kafkajs"
    token = signed(provider.ec, claims("frank", aud=AUDIENCE, iss=ISSUER))
    env = {"PATH": "/usr/bin:/bin", "BROKERS": f"127.0.0.1:{broker.signed_port}",
           "TOPIC": f"oauth-js-{uuid.uuid4().hex[:8]}", "OAUTH_TOKEN": token, "TEXT": "kafkajs over SASL/OAUTHBEARER", "KAFKAJS_NO_PARTITIONER_WARNING": "1"}
    done = subprocess.run([node, "secured-roundtrip.js"], cwd=compat, env=env, capture_output=True, text=True,
                          timeout=WAIT_S + 30, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "kafkajs over SASL/OAUTHBEARER"


class Login:
    """A raw OAUTHBEARER exchange on a fresh connection."""

    def __init__(self, port: int, version: int = 1):
        self.w = Wire(f"127.0.0.1:{port}")
        self.version = version
        self.w.send(SaslHandshakeRequest(mechanism="OAUTHBEARER"), 1, 1)
        assert self.w.receive(SaslHandshakeRequest.API_KEY, 1)[1].error_code == ErrorCode.NONE
        self.correlation = 1

    def send(self, data: bytes):
        self.correlation += 1
        self.w.send(SaslAuthenticateRequest(auth_bytes=data), self.version, self.correlation)
        return self.w.receive(SaslAuthenticateRequest.API_KEY, self.version)[1]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.w.close()


def refused(port: int, token: str, caplog, reason: str) -> None:
    """Kafka's exchange for a refused token: the error JSON as a challenge,
    then, after the client's \\x01, the failure with that JSON; the reason
    is in the broker's log, once."""
    caplog.clear()
    with Login(port) as login:
        challenge = login.send(client_message(token))
        assert (challenge.error_code, bytes(challenge.auth_bytes)) == (ErrorCode.NONE, INVALID.encode())
        answer = login.send(b"\x01")
        assert (answer.error_code, answer.error_message) == (ErrorCode.SASL_AUTHENTICATION_FAILED, INVALID)
        assert login.w.closed_by_peer()
    lines = [r.getMessage() for r in caplog.records if "failed authentication with" in r.getMessage()]
    assert len(lines) == 1 and reason in lines[0], lines


def test_unsecured_token_faults(broker, caplog):
    caplog.set_level(logging.INFO, logger="pybroker.sasl")
    port = broker.unsecured_port
    refused(port, unsecured(claims(lifetime_s=-10)), caplog, "was on or after the Expiration Time value")
    refused(port, unsecured({"sub": "alice"}), caplog, "No expiration time in JWT")
    refused(port, unsecured(claims(sub="")), caplog, "No principal name in JWT claim: sub")
    refused(port, "not.a-token.at-all", caplog, "malformed")


def test_signed_token_faults(broker, provider, caplog):
    caplog.set_level(logging.INFO, logger="pybroker.sasl")
    port = broker.signed_port
    good = claims(aud=AUDIENCE, iss=ISSUER)
    refused(port, unsecured(good), caplog, "expected three sections")
    alg_none = unsecured(good) + "c2ln"
    refused(port, alg_none, caplog, "'none' is not a permitted algorithm")
    forged = signed(provider.rsa, good)[:-8] + "AAAAAAAA"
    refused(port, forged, caplog, "JWS signature is invalid")
    other = SigningKey("rsa-1", "RS256")  # the same kid, another key
    refused(port, signed(other, good), caplog, "JWS signature is invalid")
    unknown = SigningKey("nobody", "RS256")
    refused(port, signed(unknown, good), caplog, "Unable to find a suitable verification key")
    refused(port, signed(provider.rsa, claims(aud=AUDIENCE, iss=ISSUER, lifetime_s=-120)), caplog,
            "The JWT is no longer valid")
    refused(port, signed(provider.rsa, claims(aud="someone-else", iss=ISSUER)), caplog,
            "Audience (aud) claim [someone-else] doesn't contain an acceptable identifier")
    refused(port, signed(provider.rsa, claims(aud=AUDIENCE, iss="https://elsewhere")), caplog,
            "Issuer (iss) claim value (https://elsewhere) doesn't match expected value of https://issuer.example")
    # Signed by a key only the HTTP JWKS has.
    refused(port, signed(provider.pss, good), caplog, "Unable to find a suitable verification key")


def test_malformed_messages_are_refused_at_once_in_kafkas_words(broker, caplog):
    caplog.set_level(logging.INFO, logger="pybroker.sasl")
    for message in (b"garbage", b"n,", b"n,,\x01auth=Bearer\x01\x01", b"n,,\x01auth=Bearer a.b.\x01", b"\xff\xfe"):
        with Login(broker.unsecured_port) as login:
            answer = login.send(message)
            assert (answer.error_code, answer.error_message) == (ErrorCode.SASL_AUTHENTICATION_FAILED, GENERIC)
            assert login.w.closed_by_peer()
    assert any("Invalid OAUTHBEARER client first message" in r.getMessage() for r in caplog.records)


def test_an_authorization_id_must_be_the_principal_and_extensions_are_taken(broker):
    token = unsecured(claims("alice"))
    with Login(broker.unsecured_port) as login:
        answer = login.send(client_message(token, authzid="bob"))
        assert answer.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
        assert answer.error_message == ("Authentication failed: Client requested an authorization id (bob) that is"
                                        " different from the token's principal name (alice)")
    with Login(broker.unsecured_port) as login:
        answer = login.send(client_message(token, authzid="alice", traceId="abc 123"))
        assert (answer.error_code, bytes(answer.auth_bytes)) == (ErrorCode.NONE, b"")


def test_the_session_lifetime_is_the_tokens(broker, provider):
    """SaslAuthenticate v1: the time left on the token (KIP-368)."""
    with Login(broker.signed_port) as login:
        answer = login.send(client_message(signed(provider.ec, claims(aud=AUDIENCE, iss=ISSUER, lifetime_s=120))))
        assert answer.error_code == ErrorCode.NONE
        assert 100_000 < answer.session_lifetime_ms <= 120_000
        login.w.send(MetadataRequest(topics=[]), 1, 9)
        assert login.w.receive(MetadataRequest.API_KEY, 1)[1].brokers


def test_a_key_added_to_the_http_jwks_is_fetched_when_a_token_names_it(broker, provider):
    """An unknown kid makes the broker fetch the JWKS again (not waiting
    for the refresh interval); the token is taken once the key is there."""
    new = SigningKey("rsa-2", "RS256")
    provider.document = jwks(provider.pss, provider.ec384, new)
    token = signed(new, claims("grace", aud=AUDIENCE))
    deadline = time.monotonic() + WAIT_S
    while True:
        with Login(broker.fetched_port) as login:
            answer = login.send(client_message(token))
            if answer.error_code == ErrorCode.NONE and not bytes(answer.auth_bytes):
                break
            login.send(b"\x01")
        assert time.monotonic() < deadline, "the new key was never fetched"
        time.sleep(0.05)  # between attempts; the condition is the answer above


def signed_listener(url: str, **more) -> dict:
    return {"listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
            "sasl.enabled.mechanisms": "OAUTHBEARER", "sasl.jaas.config": f"{MODULE} required;",
            "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class": HANDLER,
            **({"sasl.oauthbearer.jwks.endpoint.url": url} if url else {}), **more}


@pytest.mark.parametrize(
    "props,message",
    [
        (signed_listener(""), "sasl.oauthbearer.jwks.endpoint.url value must be non-null"),
        (signed_listener("ftp://x/jwks"), 'only "http", "https", and "file" protocol are supported'),
        (signed_listener("file:///x", **{
            "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class": "com.example.Mine"}),
         "com.example.Mine is not served"),
        ({"listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0", "sasl.enabled.mechanisms": "OAUTHBEARER",
          "sasl.jaas.config": f'{MODULE} required unsecuredValidatorAllowableClockSkewMs="-1";'},
         "Allowable clock skew millis must not be negative"),
    ],
)
def test_oauthbearer_configuration_problems_stop_the_start(props, message):
    with pytest.raises(ConfigError, match=message):
        BrokerConfig(props)


def test_a_jwks_that_cannot_be_read_stops_the_start(tmp_path):
    with pytest.raises(RuntimeError) as info, running_broker(signed_listener((tmp_path / "none.json").as_uri())):
        pass
    error = info.value.__cause__
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    assert isinstance(error, ListenerError) and "cannot read the JWKS at file:" in str(error)


def test_a_request_for_a_scope_the_token_lacks(tmp_path):
    props = {"listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
             "sasl.enabled.mechanisms": "OAUTHBEARER",
             "sasl.jaas.config": f'{MODULE} required unsecuredValidatorRequiredScope="read write";'}
    with running_broker(props) as b, Login(b.broker.bound_by_listener["SASL_PLAINTEXT"][1]) as login:
        challenge = login.send(client_message(unsecured(claims(scope=["read"]))))
        expected = '{"status":"insufficient_scope", "scope":"[read, write]"}'
        assert bytes(challenge.auth_bytes) == expected.encode()
        answer = login.send(b"\x01")
        assert (answer.error_code, answer.error_message) == (ErrorCode.SASL_AUTHENTICATION_FAILED, expected)


def test_other_clients_are_unaffected(broker):
    """After all of the above, the plaintext listener still serves."""
    assert AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=WAIT_S).brokers
