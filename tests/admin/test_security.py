"""The admin CLI against secured listeners: ``scram-credentials``
makes, lists and deletes SCRAM users; ``--command-config`` carries
Kafka's client security properties (SASL PLAIN and SCRAM over TLS, TLS
with a client certificate); a wrong password or an untrusted broker is
one line and exit code 1."""

from __future__ import annotations

import pytest

from pybroker.testing import running_broker

from .conftest import DEV, unique

JAAS = 'org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="admin-secret";'


@pytest.fixture(scope="module")
def secured(certs):
    props = {
        **DEV,
        "listeners": "PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0,SSL://127.0.0.1:0",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
        "sasl.jaas.config": JAAS,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.server.both),
        "ssl.client.auth": "none",
        "listener.name.ssl.ssl.client.auth": "required",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca.path),
        "connection.failed.authentication.delay.ms": "100",
    }
    with running_broker(props) as b:
        b.sasl_ssl = f"127.0.0.1:{b.broker.bound_by_listener['SASL_SSL'][1]}"
        b.ssl = f"127.0.0.1:{b.broker.bound_by_listener['SSL'][1]}"
        yield b


def config_file(tmp_path, **props) -> str:
    path = tmp_path / f"{unique('client')}.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return str(path)


def scram_config(tmp_path, certs, user, password) -> str:
    return config_file(tmp_path, **{
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" '
                            f'password="{password}";',
        "ssl.truststore.location": str(certs.ca.path)})


def test_scram_users_are_made_listed_used_and_deleted(secured, certs, run, tmp_path):
    plaintext = ["--bootstrap-server", secured.bootstrap_servers]
    assert run("scram-credentials", "add", "--user", "alice", "--password", "alice-secret",
               "--iterations", "8192", *plaintext).code == 0
    listed = run("scram-credentials", "list", "--json", *plaintext).json()
    assert {"user": "alice", "credentials": [{"mechanism": "SCRAM-SHA-512", "iterations": 8192}]} in listed
    as_alice = ["--bootstrap-server", secured.sasl_ssl, "--command-config",
                scram_config(tmp_path, certs, "alice", "alice-secret")]
    topic = unique("scram-cli")
    assert run("topics", "create", "--topic", topic, *as_alice).code == 0
    assert run("produce", "--topic", topic, "hello", *as_alice).code == 0
    consumed = run("consume", "--topic", topic, "--from-beginning", "--max-messages", "1", *as_alice)
    assert consumed.code == 0 and "hello" in consumed.out
    wrong = run("topics", "list", "--bootstrap-server", secured.sasl_ssl, "--command-config",
                scram_config(tmp_path, certs, "alice", "not-it"))
    assert wrong.code == 1 and wrong.err.startswith("pybroker: SASL_AUTHENTICATION_FAILED: ")
    assert run("scram-credentials", "delete", "--user", "alice", *plaintext).code == 0
    gone = run("topics", "list", *as_alice)
    assert gone.code == 1 and "SASL_AUTHENTICATION_FAILED" in gone.err
    missing = run("scram-credentials", "list", "--user", "alice", *plaintext)
    assert missing.code == 1 and missing.err.startswith("pybroker: RESOURCE_NOT_FOUND: ")


def test_sasl_plain_and_a_client_certificate_through_command_config(secured, certs, run, tmp_path):
    plain = config_file(tmp_path, **{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                                     "sasl.username": "admin", "sasl.password": "admin-secret",
                                     "ssl.ca.location": str(certs.ca.path)})
    assert run("topics", "list", "--bootstrap-server", secured.sasl_ssl, "--command-config", plain).code == 0
    with_cert = config_file(tmp_path, **{"security.protocol": "SSL", "ssl.truststore.location": str(certs.ca.path),
                                         "ssl.keystore.location": str(certs.client.both)})
    described = run("cluster", "describe", "--json", "--bootstrap-server", secured.ssl, "--command-config", with_cert)
    assert described.code == 0 and described.json()["brokers"][0]["port"] == int(secured.ssl.rsplit(":", 1)[1])
    without_cert = config_file(tmp_path, **{"security.protocol": "SSL", "ssl.truststore.location": str(certs.ca.path)})
    refused = run("topics", "list", "--request-timeout-ms", "5000", "--bootstrap-server", secured.ssl,
                  "--command-config", without_cert)
    assert refused.code == 1 and refused.err.startswith("pybroker: ")


def test_an_untrusted_broker_and_a_bad_config_are_one_line(secured, certs, run, tmp_path):
    untrusting = config_file(tmp_path, **{"security.protocol": "SSL",
                                          "ssl.truststore.location": str(certs.stranger.cert)})
    refused = run("topics", "list", "--bootstrap-server", secured.ssl, "--command-config", untrusting)
    assert refused.code == 1 and refused.err.startswith("pybroker: SSL_HANDSHAKE_FAILED: ")
    bad = run("topics", "list", "--command-config", config_file(tmp_path, **{"security.protocol": "KERBEROS"}))
    assert bad.code == 1 and "security.protocol KERBEROS" in bad.err
    assert len(bad.err.strip().splitlines()) == 1
