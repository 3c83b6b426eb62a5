"""The PLAIN mechanism (RFC 4616) with Kafka's server callback: the users
are the JAAS options ``user_<name>`` of PlainLoginModule, their values the
passwords."""

from __future__ import annotations

import hmac

from .jaas import JaasError, parse_jaas
from .session import SaslFailure

PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
# Kafka's words for every refused PLAIN token: nothing tells a guesser
# whether the user exists.
INVALID = "Authentication failed: Invalid username or password"


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


class PlainExchange:
    """One token, one answer (empty)."""

    def __init__(self, users: dict[str, str]):
        self.users = users
        self.complete = False
        self.user: str | None = None
        self.lifetime_ms = 0

    def step(self, token: bytes) -> bytes:
        if self.complete:
            raise SaslFailure("Authentication failed: PLAIN takes one token")
        user = check_plain(token, self.users)
        if user is None:
            raise SaslFailure(INVALID)
        self.user, self.complete = user, True
        return b""
