"""kcat (Debian's, librdkafka 2.0.x) over SASL and TLS, which takes two
of Kafka's leniencies: it asks for SaslHandshake v0 before it will do
SASL at all (and then sends PLAIN as a bare token), and its SCRAM final
message repeats the client nonce in front of the server's, which Kafka
3.x accepts. Also a SaslHandshake v0 exchange by hand: bare tokens both
ways, and a refused one closes the connection."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid

import pytest

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.metadata_request import MetadataRequest
from pybroker.protocol.messages.sasl_handshake_request import SaslHandshakeRequest
from pybroker.testing import running_broker

from .wire import Wire

WAIT_S = 30
JAAS = 'org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="admin-secret";'


@pytest.fixture(scope="module")
def broker(certs):
    assert shutil.which("kcat"), "kcat is not installed: apt-get install kcat"
    props = {
        "listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0,SSL://127.0.0.1:0",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
        "sasl.jaas.config": JAAS,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.server.both),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca.path),
        "listener.name.ssl.ssl.client.auth": "required",
        "connection.failed.authentication.delay.ms": "100",
    }
    with running_broker(props, dev=True) as b:
        b.port = {name: b.broker.bound_by_listener[name][1] for name in ("SASL_PLAINTEXT", "SASL_SSL", "SSL")}
        subprocess.run([sys.executable, "-m", "pybroker", "scram-credentials", "add", "--user", "alice",
                        "--password", "alice-secret", "--bootstrap-server", b.bootstrap_servers], check=True,
                       capture_output=True, timeout=WAIT_S)
        yield b


def kcat(port: int, *settings: str, args: list[str], text: str | None = None) -> subprocess.CompletedProcess:
    flags = [f for s in settings for f in ("-X", s)]
    return subprocess.run(["kcat", "-b", f"127.0.0.1:{port}", *flags, *args], input=text, capture_output=True, check=False,
                          text=True, timeout=WAIT_S)


def round_trip(port: int, *settings: str) -> None:
    topic = f"kcat-sec-{uuid.uuid4().hex[:8]}"
    produced = kcat(port, *settings, args=["-P", "-t", topic], text="secured line\n")
    assert produced.returncode == 0, produced.stderr
    consumed = kcat(port, *settings, args=["-C", "-t", topic, "-o", "beginning", "-c", "1", "-e"])
    assert consumed.returncode == 0 and consumed.stdout.strip() == "secured line", consumed.stderr


def test_kcat_with_sasl_plain(broker):
    round_trip(broker.port["SASL_PLAINTEXT"], "security.protocol=SASL_PLAINTEXT", "sasl.mechanisms=PLAIN",
               "sasl.username=admin", "sasl.password=admin-secret")


def test_kcat_with_scram_over_tls(broker, certs):
    round_trip(broker.port["SASL_SSL"], "security.protocol=SASL_SSL", f"ssl.ca.location={certs.ca.path}",
               "sasl.mechanisms=SCRAM-SHA-512", "sasl.username=alice", "sasl.password=alice-secret")


def test_kcat_with_a_client_certificate(broker, certs):
    round_trip(broker.port["SSL"], "security.protocol=SSL", f"ssl.ca.location={certs.ca.path}",
               f"ssl.certificate.location={certs.client.cert}", f"ssl.key.location={certs.client.key}")


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_kcat_with_a_wrong_password_is_refused(broker, mechanism):
    user = "admin" if mechanism == "PLAIN" else "alice"
    listed = kcat(broker.port["SASL_PLAINTEXT"], "security.protocol=SASL_PLAINTEXT", f"sasl.mechanisms={mechanism}",
                  f"sasl.username={user}", "sasl.password=wrong", args=["-L", "-m", "5"])
    assert listed.returncode != 0 and "Authentication" in listed.stderr


def bare(w: Wire, token: bytes) -> bytes | None:
    """Send a token after SaslHandshake v0; the bare answer, None when closed."""
    w.send_raw(len(token).to_bytes(4, "big") + token)
    frame = w.frame()
    return None if frame is None else bytes(frame)


def test_a_v0_handshake_takes_bare_tokens(broker):
    w = Wire(f"127.0.0.1:{broker.port['SASL_PLAINTEXT']}")
    try:
        w.send(SaslHandshakeRequest(mechanism="PLAIN"), 0, 1)
        assert w.receive(SaslHandshakeRequest.API_KEY, 0)[1].error_code == ErrorCode.NONE
        assert bare(w, b"\x00admin\x00admin-secret") == b""  # PLAIN's empty answer
        w.send(MetadataRequest(topics=None), 1, 2)
        assert w.receive(MetadataRequest.API_KEY, 1)[1].brokers  # authenticated: requests are served
    finally:
        w.close()
    w = Wire(f"127.0.0.1:{broker.port['SASL_PLAINTEXT']}")
    try:
        w.send(SaslHandshakeRequest(mechanism="PLAIN"), 0, 1)
        w.receive(SaslHandshakeRequest.API_KEY, 0)
        assert bare(w, b"\x00admin\x00wrong") is None  # refused: v0 can only close
    finally:
        w.close()
