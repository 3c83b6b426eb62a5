"""SSL listeners beside a PLAINTEXT one, driven by librdkafka and
kafka-python over real TLS: each client is given the addresses of the
listener it came in on; PEM keystores from a file, an encrypted key, or
inline; client certificates required; TLS versions bounded. A client
speaking plaintext to the TLS port, TLS to the plaintext port, or
presenting an untrusted certificate gets a closed connection and one log
line, and costs the other connections nothing."""

from __future__ import annotations

import logging
import socket
import ssl
import time
import uuid

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer

from pybroker.config import BrokerConfig, ConfigError
from pybroker.testing import running_broker

from .secured import round_trip

WAIT_S = 30


def tls_props(certs, **more) -> dict:
    return {
        "listeners": "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.server.both),
        **more,
    }


@pytest.fixture(scope="module")
def broker(certs):
    with running_broker(tls_props(certs), dev=True) as b:
        b.ssl_port = b.broker.bound_by_listener["SSL"][1]
        b.ssl_bootstrap = f"127.0.0.1:{b.ssl_port}"
        yield b


def confluent_tls(certs, bootstrap: str, **more) -> dict:
    return {"bootstrap.servers": bootstrap, "security.protocol": "SSL", "ssl.ca.location": str(certs.ca.path), **more}


def test_librdkafka_over_tls(broker, certs):
    conf = confluent_tls(certs, broker.ssl_bootstrap)
    round_trip(conf, conf)


def test_each_listener_advertises_its_own_addresses(broker, certs):
    over_tls = AdminClient(confluent_tls(certs, broker.ssl_bootstrap)).list_topics(timeout=WAIT_S)
    plain = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=WAIT_S)
    assert [(b.host, b.port) for b in over_tls.brokers.values()] == [("127.0.0.1", broker.ssl_port)]
    assert [(b.host, b.port) for b in plain.brokers.values()] == [("127.0.0.1", broker.port)]


def test_kafka_python_over_tls(broker, certs):
    topic = f"tls-kp-{uuid.uuid4().hex[:8]}"
    tls = {"bootstrap_servers": broker.ssl_bootstrap, "security_protocol": "SSL", "ssl_cafile": str(certs.ca.path)}
    producer = KafkaProducer(**tls)
    producer.send(topic, b"kafka-python over TLS").get(timeout=WAIT_S)
    producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=WAIT_S * 1000, **tls)
    try:
        assert next(iter(consumer)).value == b"kafka-python over TLS"
    finally:
        consumer.close()


def api_versions_frame() -> bytes:
    body = b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x04test"  # ApiVersions v0, client id "test"
    return len(body).to_bytes(4, "big") + body


def test_plaintext_to_the_tls_port_is_closed_and_logged(broker, caplog):
    caplog.set_level(logging.INFO, logger="pybroker.server")
    with socket.create_connection(("127.0.0.1", broker.ssl_port), timeout=WAIT_S) as s:
        s.sendall(api_versions_frame())
        answered = b""
        while chunk := s.recv(4096):  # closed by the broker (the timeout bounds the wait)
            answered += chunk
    assert len(answered) < 64  # a TLS alert at most, never a Kafka answer
    deadline = time.monotonic() + WAIT_S
    while not any("TLS handshake with" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the captured log, bounded by the deadline
    assert any("TLS handshake with" in r.getMessage() and "on listener SSL failed" in r.getMessage()
               for r in caplog.records)
    round_trip(*[{"bootstrap.servers": broker.bootstrap_servers}] * 2)


def test_tls_to_the_plaintext_port_is_closed(broker, certs):
    context = ssl.create_default_context(cafile=str(certs.ca.path))
    with (
        socket.create_connection(("127.0.0.1", broker.port), timeout=WAIT_S) as raw,
        pytest.raises((ssl.SSLError, ConnectionError, OSError)),
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(api_versions_frame())
        if not tls.recv(4096):
            raise ConnectionError("closed")
    conf = confluent_tls(certs, broker.ssl_bootstrap)
    round_trip(conf, conf)


def test_client_certificates_required(certs, tmp_path):
    props = tls_props(certs, **{"ssl.client.auth": "required", "ssl.truststore.type": "PEM",
                                "ssl.truststore.location": str(certs.ca.path)})
    with running_broker(props, dev=True) as b:
        bootstrap = f"127.0.0.1:{b.broker.bound_by_listener['SSL'][1]}"
        good = confluent_tls(certs, bootstrap, **{"ssl.certificate.location": str(certs.client.cert),
                                                  "ssl.key.location": str(certs.client.key)})
        round_trip(good, good)
        for refused in (
            confluent_tls(certs, bootstrap),  # no certificate
            confluent_tls(certs, bootstrap, **{"ssl.certificate.location": str(certs.stranger.cert),
                                               "ssl.key.location": str(certs.stranger.key)}),
        ):
            with pytest.raises(KafkaException):
                AdminClient({**refused, "socket.timeout.ms": 3000}).list_topics(timeout=5)
        round_trip(good, good)  # the refusals cost the others nothing


def test_tls_versions_are_bounded(certs):
    with running_broker(tls_props(certs, **{"ssl.enabled.protocols": "TLSv1.3"}), dev=True) as b:
        port = b.broker.bound_by_listener["SSL"][1]
        old = ssl.create_default_context(cafile=str(certs.ca.path))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as raw, pytest.raises(ssl.SSLError):
            old.wrap_socket(raw, server_hostname="127.0.0.1").close()
        new = ssl.create_default_context(cafile=str(certs.ca.path))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as raw,
            new.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.version() == "TLSv1.3"


def test_inline_and_encrypted_pem_keystores(certs):
    inline = tls_props(certs, **{"ssl.keystore.location": "",
                                 "ssl.keystore.certificate.chain": certs.server.cert.read_text(),
                                 "ssl.keystore.key": certs.server.key.read_text()})
    encrypted = tls_props(certs, **{"ssl.keystore.location": str(certs.encrypted_server.both),
                                    "ssl.key.password": certs.password})
    for props in (inline, encrypted):
        with running_broker(props, dev=True) as b:
            conf = confluent_tls(certs, f"127.0.0.1:{b.broker.bound_by_listener['SSL'][1]}")
            assert AdminClient(conf).list_topics(timeout=WAIT_S).brokers


@pytest.mark.parametrize(
    "more,message",
    [
        ({"ssl.keystore.location": ""}, "an SSL listener needs a keystore"),
        ({"ssl.keystore.type": "JKS"}, "pybroker reads PEM keystores only"),
        ({"ssl.keystore.location": "/no/such/keystore.pem"}, "no such file"),
        ({"ssl.client.auth": "required"}, "needs a truststore"),
        ({"ssl.cipher.suites": "NO-SUCH-CIPHER"}, "no usable cipher suite"),
        ({"ssl.enabled.protocols": "TLSv1.1"}, "ssl.enabled.protocols"),
        ({"listeners": "SSL://127.0.0.1:0", "security.inter.broker.protocol": "SSL"}, "check each other.s certificates"),
    ],
)
def test_tls_configuration_problems_stop_the_start(certs, more, message):
    with pytest.raises(ConfigError, match=message):
        BrokerConfig(tls_props(certs, **more))


def test_a_wrong_key_password_is_named(certs):
    with pytest.raises(ConfigError, match="ssl.keystore.location .*wrong ssl.key.password"):
        BrokerConfig(tls_props(certs, **{"ssl.keystore.location": str(certs.encrypted_server.both),
                                         "ssl.key.password": "not-it"}))


def test_the_client_certificate_names_the_principal(certs, caplog):
    caplog.set_level(logging.DEBUG, logger="pybroker.requests")
    props = tls_props(certs, **{"ssl.client.auth": "requested", "ssl.truststore.type": "PEM",
                                "ssl.truststore.location": str(certs.ca.path),
                                "ssl.principal.mapping.rules": "RULE:^CN=(mallory|bob),.*$/$1/,"
                                                               "RULE:^CN=(.*?),O=(.*)$/$1@$2/U,DEFAULT"})
    with running_broker(props, dev=True) as b:
        bootstrap = f"127.0.0.1:{b.broker.bound_by_listener['SSL'][1]}"
        with_cert = confluent_tls(certs, bootstrap, **{"ssl.certificate.location": str(certs.client.cert),
                                                       "ssl.key.location": str(certs.client.key),
                                                       "client.id": "with-cert"})
        AdminClient(with_cert).list_topics(timeout=WAIT_S)
        AdminClient(confluent_tls(certs, bootstrap, **{"client.id": "without"})).list_topics(timeout=WAIT_S)
    lines = [r.getMessage() for r in caplog.records if r.name == "pybroker.requests"]
    # The subject is CN=alice,O=pybroker tests: the second rule applies.
    assert any("User:ALICE@PYBROKER TESTS client 'with-cert'" in line for line in lines)
    assert any("User:ANONYMOUS client 'without'" in line for line in lines)


def test_a_certificate_no_rule_maps_is_refused(certs, caplog):
    caplog.set_level(logging.INFO, logger="pybroker.server")
    props = tls_props(certs, **{"ssl.client.auth": "required", "ssl.truststore.type": "PEM",
                                "ssl.truststore.location": str(certs.ca.path),
                                "ssl.principal.mapping.rules": "RULE:^CN=bob,.*$/bob/"})
    with running_broker(props, dev=True) as b:
        bootstrap = f"127.0.0.1:{b.broker.bound_by_listener['SSL'][1]}"
        conf = confluent_tls(certs, bootstrap, **{"ssl.certificate.location": str(certs.client.cert),
                                                  "ssl.key.location": str(certs.client.key),
                                                  "socket.timeout.ms": 3000})
        with pytest.raises(KafkaException):
            AdminClient(conf).list_topics(timeout=5)
        round_trip({"bootstrap.servers": b.bootstrap_servers})  # the PLAINTEXT listener carries on
    assert any("No rules apply to CN=alice,O=pybroker tests" in r.getMessage() for r in caplog.records)


def test_bad_principal_mapping_rules_stop_the_start(certs):
    with pytest.raises(ConfigError, match="ssl.principal.mapping.rules"):
        BrokerConfig(tls_props(certs, **{"ssl.principal.mapping.rules": "RULE:^CN=(.*$/$1/"}))


def test_a_truncated_handshake_is_closed_in_time_and_costs_nothing(broker, caplog):
    caplog.set_level(logging.INFO, logger="pybroker.server")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    with socket.create_connection(("127.0.0.1", broker.ssl_port), timeout=WAIT_S) as s:
        s.sendall(hello[: len(hello) // 2])  # half a ClientHello, then nothing
        started = time.monotonic()
        round_trip(*[{"bootstrap.servers": broker.bootstrap_servers}] * 2)  # others are served meanwhile
        assert s.recv(1) == b""  # closed by the broker's handshake bound (10 s), the timeout bounds the wait
        assert time.monotonic() - started < WAIT_S
    deadline = time.monotonic() + WAIT_S
    while not any("TLS handshake with" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the captured log, bounded by the deadline
    assert any("TLS handshake with" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)
