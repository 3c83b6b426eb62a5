"""The matrix's security dimension: each client run over a secured listener.

A mode is a ``security.protocol`` and, for SASL, a mechanism. The broker
under test gets one extra listener per protocol the modes use (SSL with
``ssl.client.auth=required``, SASL_SSL, SASL_PLAINTEXT) beside the PLAINTEXT
one the other rows use (and the brokers of a cluster use between them).
Certificates are made for the run: a CA, the broker's certificate for
127.0.0.1, and a client certificate with its key, PEM.

A scenario program is given the mode as a file of Kafka client properties
(``--security FILE``): ``security.protocol``, ``sasl.mechanism``,
``sasl.username``, ``sasl.password``, ``ssl.ca.location``,
``ssl.certificate.location``, ``ssl.key.location``. For OAUTHBEARER the client
makes an unsecured JWT (``alg: none``) whose ``sub`` is ``sasl.username``.

A mode whose mechanism the broker does not serve (not in
``pybroker.sasl.SUPPORTED_MECHANISMS``) is reported ``not run``; it runs as
soon as the mechanism is there. Everything a mode needs is data below.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from pybroker.local_cluster import wait_for
from pybroker.process import request
from pybroker.protocol.messages.alter_user_scram_credentials_request import (
    AlterUserScramCredentialsRequest,
    ScramCredentialUpsertion,
)
from pybroker.protocol.messages.describe_user_scram_credentials_request import (
    DescribeUserScramCredentialsRequest,
    UserName,
)

USER, PASSWORD = "alice", "alice-secret"
NOT_RUN = "not run"  # a cell's result when the broker lacks the mode's mechanism


@dataclass(frozen=True)
class Mode:
    protocol: str  # the listener's and the client's security.protocol
    mechanism: str | None  # the SASL mechanism, None for SSL
    summary: str

    @property
    def name(self) -> str:
        return f"{self.protocol}/{self.mechanism}" if self.mechanism else self.protocol

    @property
    def slug(self) -> str:
        return self.name.lower().replace("/", "-").replace("_", "-")


MODES = [
    Mode("SSL", None, "TLS; the client presents a certificate signed by the run's CA (ssl.client.auth=required)"),
    Mode("SASL_PLAINTEXT", "PLAIN", "user and password"),
    Mode("SASL_SSL", "SCRAM-SHA-512", "TLS, then SCRAM-SHA-512 with a user made by AlterUserScramCredentials"),
    Mode("SASL_PLAINTEXT", "OAUTHBEARER", "an unsecured JWT (alg none) whose sub is the user"),
]

# The rows run in every mode: metadata (on a cluster the client must find
# every broker on the listener it came in on) and a produce + group consume
# with a commit.
SCENARIOS = ("metadata", "group-resume")

# Each mechanism's JAAS configuration on the broker, as Kafka's. PLAIN's
# users are in it; SCRAM's are made through the broker (see provision());
# OAUTHBEARER's unsecured validator needs none.
JAAS = {
    "PLAIN": f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}="{PASSWORD}";',
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    "OAUTHBEARER": "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;",
}
# AlterUserScramCredentials' mechanism codes, and Kafka's minimum iterations.
SCRAM_TYPES = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
SCRAM_ITERATIONS = 4096


def supported_mechanisms() -> tuple[str, ...]:
    """What the broker serves, read when the run starts."""
    from pybroker.sasl import SUPPORTED_MECHANISMS

    return tuple(SUPPORTED_MECHANISMS)


def broker_lacks(mode: Mode, supported: tuple[str, ...]) -> str | None:
    if mode.mechanism is None or mode.mechanism in supported:
        return None
    return f"the broker lacks {mode.mechanism} (not in pybroker.sasl.SUPPORTED_MECHANISMS)"


def listener_mechanisms(supported: tuple[str, ...], modes: list[Mode]) -> dict[str, list[str]]:
    """{security protocol: the mechanisms its listener enables} for the modes that run."""
    found: dict[str, list[str]] = {}
    for mode in modes:
        if broker_lacks(mode, supported):
            continue
        mechanisms = found.setdefault(mode.protocol, [])
        if mode.mechanism and mode.mechanism not in mechanisms:
            mechanisms.append(mode.mechanism)
    return found


def broker_props(certs, supported: tuple[str, ...], modes: list[Mode]) -> dict[str, str]:
    """The TLS and SASL properties of the extra listeners (their addresses go in ``listeners``)."""
    props = {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.server.both),
        # As in Kafka, the broker-wide setting is meant for the SSL listener:
        # a SASL_SSL listener asks for a certificate only when its own
        # listener.name.sasl_ssl.ssl.client.auth says so.
        "ssl.client.auth": "required",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca.path),
        "inter.broker.listener.name": "PLAINTEXT",
    }
    for protocol, mechanisms in listener_mechanisms(supported, modes).items():
        if not mechanisms:
            continue
        prefix = f"listener.name.{protocol.lower()}."
        props[prefix + "sasl.enabled.mechanisms"] = ",".join(mechanisms)
        for mechanism in mechanisms:
            props[f"{prefix}{mechanism.lower()}.sasl.jaas.config"] = JAAS[mechanism]
    return props


def listeners(plaintext_port: int, ports: dict[str, int]) -> str:
    """The ``listeners`` value: PLAINTEXT first, then one per secured protocol."""
    return ",".join([f"PLAINTEXT://127.0.0.1:{plaintext_port}"] + [f"{p}://127.0.0.1:{n}" for p, n in ports.items()])


def provision(bootstraps: list[str], supported: tuple[str, ...], modes: list[Mode]) -> None:
    """Make the SCRAM users through the first broker's PLAINTEXT listener, as
    kafka-configs does (AlterUserScramCredentials), then wait until every
    broker describes them; raise on any error code."""
    upsertions = []
    for mechanism in sorted({m.mechanism for m in modes if m.mechanism in SCRAM_TYPES and not broker_lacks(m, supported)}):
        code, digest = SCRAM_TYPES[mechanism]
        salt = secrets.token_bytes(32)
        salted = hashlib.pbkdf2_hmac(digest, PASSWORD.encode(), salt, SCRAM_ITERATIONS)
        upsertions.append(ScramCredentialUpsertion(
            name=USER, mechanism=code, iterations=SCRAM_ITERATIONS, salt=salt, salted_password=salted))
    if not upsertions:
        return
    answer = request(bootstraps[0], AlterUserScramCredentialsRequest(deletions=[], upsertions=upsertions), 0,
                     client_id="compat-runner")
    for result in answer.results:
        if result.error_code:
            raise RuntimeError(f"AlterUserScramCredentials {result.user}: error {result.error_code}"
                               f" {result.error_message}")
    wanted = {u.mechanism for u in upsertions}

    def known(bootstrap: str) -> bool:
        body = DescribeUserScramCredentialsRequest(users=[UserName(name=USER)])
        results = request(bootstrap, body, 0, client_id="compat-runner").results
        return bool(results) and {i.mechanism for i in results[0].credential_infos} >= wanted

    wait_for(lambda: all(known(b) for b in bootstraps), 30, f"every broker to know {USER}'s SCRAM credentials")


def client_properties(mode: Mode, certs) -> dict[str, str]:
    props = {"security.protocol": mode.protocol}
    if mode.protocol in ("SSL", "SASL_SSL"):
        props["ssl.ca.location"] = str(certs.ca.path)
    if mode.protocol == "SSL":
        props["ssl.certificate.location"] = str(certs.client.cert)
        props["ssl.key.location"] = str(certs.client.key)
    if mode.mechanism:
        props.update({"sasl.mechanism": mode.mechanism, "sasl.username": USER})
        if mode.mechanism != "OAUTHBEARER":
            props["sasl.password"] = PASSWORD
    return props


class Secured:
    """One run's security set-up: certificates and a client properties file
    per mode in ``folder``, and the mechanisms the broker serves."""

    def __init__(self, folder: Path, modes: list[Mode] = MODES):
        from tests.tls_certs import make_certs

        self.modes = modes
        self.supported = supported_mechanisms()
        self.certs = make_certs(folder / "certs")
        self.files = {}
        for mode in modes:
            path = folder / f"{mode.slug}.properties"
            path.write_text("".join(f"{k}={v}\n" for k, v in client_properties(mode, self.certs).items()))
            self.files[mode.name] = path
        self.protocols = [p for p, _ in listener_mechanisms(self.supported, modes).items()]

    def broker_props(self) -> dict[str, str]:
        return broker_props(self.certs, self.supported, self.modes)

    def provision(self, bootstraps: list[str]) -> None:
        provision(bootstraps, self.supported, self.modes)

