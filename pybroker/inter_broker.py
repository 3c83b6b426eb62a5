"""How a broker connects to the others, over the inter-broker listener:
PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, as Kafka's brokers do.

TLS: the broker checks the other broker's certificate against its own
truststore (``ssl.truststore.*``) and, unless
``ssl.endpoint.identification.algorithm`` is empty, its host name; it
shows its own keystore, for listeners that require client certificates.
SASL: ``sasl.mechanism.inter.broker.protocol`` (PLAIN, SCRAM-SHA-256 or
SCRAM-SHA-512; Kafka's default GSSAPI is refused), logging in with the
``username`` and ``password`` options of that mechanism's JAAS
configuration for the listener (Kafka's PlainLoginModule and
ScramLoginModule options). Its principal, ``User:<username>``, is what
``super.users`` names for the brokers when an authorizer runs.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from .sasl.jaas import JaasError, parse_jaas
from .tls import TlsConfigError, _load_keystore, _load_truststore


@dataclass(frozen=True)
class InterBrokerSecurity:
    protocol: str
    context: ssl.SSLContext | None = None
    check_hostname: bool = True
    mechanism: str | None = None
    username: str = ""
    password: str = ""


def client_context(v) -> ssl.SSLContext:
    if not (v["ssl.truststore.location"] or v["ssl.truststore.certificates"]):
        raise TlsConfigError("the brokers check each other's certificates against a truststore:"
                             " set ssl.truststore.location or ssl.truststore.certificates")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _load_truststore(ctx, v)
    if v["ssl.keystore.location"] or v["ssl.keystore.certificate.chain"]:
        _load_keystore(ctx, v)
    return ctx


def resolve(listener, values, jaas_texts: dict[str, str], enabled: dict | None) -> tuple[InterBrokerSecurity, list]:
    """The inter-broker listener's security, and the problems found.
    ``jaas_texts``: the listener-prefixed JAAS keys as given; ``enabled``:
    the listener's SASL mechanisms (config.sasl)."""
    protocol = listener.protocol
    problems: list[str] = []
    context, check_hostname = None, True
    if protocol in ("SSL", "SASL_SSL"):
        try:
            context = client_context(values)
        except TlsConfigError as exc:
            problems.append(f"inter-broker listener {listener.name}: {exc}")
        check_hostname = bool(values["ssl.endpoint.identification.algorithm"])
        if context is not None:
            context.check_hostname = check_hostname
    mechanism, username, password = None, "", ""
    if protocol.startswith("SASL_"):
        mechanism = values["sasl.mechanism.inter.broker.protocol"]
        if mechanism not in (enabled or {}):
            problems.append(
                f"sasl.mechanism.inter.broker.protocol {mechanism} is not enabled on the inter-broker listener"
                f" {listener.name} (sasl.enabled.mechanisms: {', '.join(enabled or {}) or 'none'})"
            )
        else:
            key = f"listener.name.{listener.name.lower()}.{mechanism.lower()}.sasl.jaas.config"
            text = jaas_texts.get(key) or values["sasl.jaas.config"] or ""
            try:
                options = parse_jaas(text)[0].options if text else {}
            except JaasError as exc:
                options = {}
                problems.append(str(exc))
            username, password = options.get("username", ""), options.get("password", "")
            if not username or not password:
                problems.append(
                    f"the brokers log in to each other with {mechanism}: {key} (or sasl.jaas.config) needs"
                    ' username="..." and password="..." options'
                )
    security = InterBrokerSecurity(protocol, context, check_hostname, mechanism, username, password)
    return security, problems
