"""``--command-config``: the client security properties of Kafka's tools
(``security.protocol``, ``sasl.mechanism``, ``sasl.jaas.config``,
``ssl.truststore.location`` ...), with librdkafka's spellings accepted too
(``sasl.username``, ``sasl.password``, ``ssl.ca.location``,
``ssl.certificate.location``, ``ssl.key.location``). Stores are PEM files,
as the broker reads them. SASL mechanisms: PLAIN, SCRAM-SHA-256/512."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from pybroker.properties import PropertiesError, parse
from pybroker.sasl.jaas import JaasError, parse_jaas

from .client import AdminError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass
class ClientSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str = "GSSAPI"
    username: str | None = None
    password: str | None = None
    context: ssl.SSLContext | None = None
    check_hostname: bool = True

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def wrap(self, sock: socket.socket, host: str) -> socket.socket:
        if self.context is None:
            return sock
        try:
            return self.context.wrap_socket(sock, server_hostname=host if self.check_hostname else None)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise AdminError("SSL_HANDSHAKE_FAILED", f"TLS with {host}: {exc}") from None


def _jaas_credentials(text: str) -> tuple[str | None, str | None]:
    try:
        modules = parse_jaas(text)
    except JaasError as exc:
        raise AdminError("INVALID_CONFIG", str(exc)) from None
    options = modules[0].options
    return options.get("username"), options.get("password")


def load(path: str | None) -> ClientSecurity:
    if not path:
        return ClientSecurity()
    try:
        props = {key: value for _, key, value in parse(Path(path).read_text(encoding="utf-8"))}
    except (OSError, PropertiesError, UnicodeDecodeError) as exc:
        raise AdminError("INVALID_CONFIG", f"--command-config {path}: {exc}") from None
    return from_properties(props)


def from_properties(props: dict[str, str]) -> ClientSecurity:
    protocol = props.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise AdminError("INVALID_CONFIG", f"security.protocol {protocol} is not one of {', '.join(PROTOCOLS)}")
    security = ClientSecurity(protocol=protocol)
    if security.sasl:
        security.mechanism = props.get("sasl.mechanism", props.get("sasl.mechanisms", "GSSAPI")).upper()
        if security.mechanism not in MECHANISMS:
            raise AdminError("INVALID_CONFIG", f"sasl.mechanism {security.mechanism} is not one of "
                                               f"{', '.join(MECHANISMS)}")
        user, password = props.get("sasl.username"), props.get("sasl.password")
        if "sasl.jaas.config" in props:
            user, password = _jaas_credentials(props["sasl.jaas.config"])
        if not user or password is None:
            raise AdminError("INVALID_CONFIG", "SASL needs a username and a password: sasl.jaas.config "
                                               "(username=\"...\" password=\"...\") or sasl.username and sasl.password")
        security.username, security.password = user, password
    if protocol in ("SSL", "SASL_SSL"):
        security.context = _context(props)
        security.check_hostname = props.get("ssl.endpoint.identification.algorithm", "https") != ""
        security.context.check_hostname = security.check_hostname
    return security


def _context(props: dict[str, str]) -> ssl.SSLContext:
    ca = props.get("ssl.truststore.location") or props.get("ssl.ca.location")
    try:
        context = ssl.create_default_context(cafile=ca)
        cert = props.get("ssl.keystore.location") or props.get("ssl.certificate.location")
        if cert:
            key = props.get("ssl.key.location") or cert
            context.load_cert_chain(cert, key, password=props.get("ssl.key.password"))
    except (OSError, ssl.SSLError) as exc:
        raise AdminError("INVALID_CONFIG", f"TLS settings: {exc}") from None
    return context
