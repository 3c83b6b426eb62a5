"""One connection's SASL state, and the PLAIN mechanism (RFC 4616) with
Kafka's server callback: the users are the JAAS options ``user_<name>``
of PlainLoginModule, their values the passwords."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from .jaas import JaasError, parse_jaas

SUPPORTED_MECHANISMS = ("PLAIN",)
PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"


def plain_users(jaas_text: str) -> dict[str, str]:
    """{user: password} of a JAAS config's PlainLoginModule."""
    modules = [m for m in parse_jaas(jaas_text) if m.name == PLAIN_MODULE]
    if not modules:
        raise JaasError(f"sasl.jaas.config: no {PLAIN_MODULE} for the PLAIN mechanism")
    return {k[len("user_"):]: v for k, v in modules[0].options.items() if k.startswith("user_")}


def check_plain(token: bytes, users: dict[str, str]) -> str | None:
    """The user a PLAIN token (``authzid NUL authcid NUL password``)
    authenticates, or None. As Kafka's PlainSaslServer: an authorization id
    other than the user is refused."""
    parts = token.split(b"\x00")
    if len(parts) != 3:
        return None
    try:
        authzid, user, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        return None
    if not user or not password or (authzid and authzid != user):
        return None
    expected = users.get(user)
    if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
        return None
    return user


@dataclass
class SaslSession:
    """``mechanisms``: what this listener enables, with each one's users."""

    listener: str
    mechanisms: dict[str, dict[str, str]]
    mechanism: str | None = None
    principal: str | None = None
    authenticated: bool = False
    # Set with the answer that refuses the client: the connection is
    # closed once that answer is sent.
    failed: bool = False
    attempts: int = field(default=0)

    def choose(self, mechanism: str) -> bool:
        if self.authenticated or self.mechanism is not None or mechanism not in self.mechanisms:
            return False
        self.mechanism = mechanism
        return True

    def authenticate(self, token: bytes) -> str | None:
        """The principal (``User:name``) once ``token`` authenticates."""
        self.attempts += 1
        user = check_plain(token, self.mechanisms[self.mechanism]) if self.mechanism == "PLAIN" else None
        if user is None:
            self.failed = True
            return None
        self.authenticated = True
        self.principal = f"User:{user}"
        return self.principal
