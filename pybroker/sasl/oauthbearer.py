"""The OAUTHBEARER mechanism (RFC 7628, KIP-255) as Kafka's
OAuthBearerSaslServer serves it.

The client's one message is ``n,[a=<authzid>],\\x01auth=Bearer <token>\\x01
[<key>=<value>\\x01]...\\x01``: a GS2 header (no channel binding; an
authorization id, if any, must be the token's principal), the token, and
SASL extensions (Kafka's default validators accept every one).

A token the validator refuses is not refused at once: the server answers
with an error JSON (``{"status":"invalid_token"}``), the client replies
``\\x01``, and only then does the authentication fail, with that JSON as
the message. A malformed message is refused at once in Kafka's general
words. The session lasts until the token expires (KIP-368).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from .session import GENERIC, SaslFailure

MECHANISM = "OAUTHBEARER"
LOGIN_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"

# RFC 5802's saslname: any ASCII but "," and "=", which travel as =2C and =3D.
_SASLNAME = r"(?:[\x01-\x2b\x2d-\x3c\x3e-\x7f]|=2C|=3D)+"
_KEY = r"[A-Za-z]+"
_VALUE = r"[\x21-\x7e \t\r\n]+"
_MESSAGE = re.compile(
    rf"n,(?:a=(?P<authzid>{_SASLNAME}))?,\x01(?P<pairs>(?:{_KEY}={_VALUE}\x01)*)\x01"
)
_AUTH = re.compile(r"(?P<scheme>\w+) +(?P<token>[-_~+/.a-zA-Z0-9]+=*)")
_INVALID = "Invalid OAUTHBEARER client first message"


class InvalidToken(Exception):
    """A validator's refusal: ``status`` and ``scope`` go to the client in
    the error JSON, ``str(exc)`` only to the broker's log."""

    def __init__(self, reason: str, status: str = "invalid_token", scope: str | None = None):
        super().__init__(reason)
        self.status = status
        self.scope = scope


@dataclass(frozen=True)
class Token:
    principal: str
    # When it expires, in ms since the epoch.
    expires_ms: int
    scope: frozenset[str] = frozenset()


# A token's text -> the token it proves, or InvalidToken.
Validator = Callable[[str], Token]


def parse_client_message(message: bytes) -> tuple[str, str, dict[str, str]]:
    """(token, authorization id, extensions) of a client's first message;
    SaslFailure (Kafka's general words, the fault in ``detail``) if it is
    not one."""
    generic = GENERIC.format("authentication", MECHANISM)
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslFailure(generic, _INVALID) from None
    m = _MESSAGE.fullmatch(text)
    if m is None:
        raise SaslFailure(generic, _INVALID)
    pairs = dict(p.split("=", 1) for p in m.group("pairs").split("\x01") if p)
    auth = pairs.pop("auth", None)
    if auth is None:
        raise SaslFailure(generic, f"{_INVALID}: 'auth' not specified")
    a = _AUTH.fullmatch(auth)
    if a is None:
        raise SaslFailure(generic, f"{_INVALID}: invalid 'auth' format")
    if a.group("scheme").lower() != "bearer":
        raise SaslFailure(generic, f"Invalid scheme in OAUTHBEARER client first message: {a.group('scheme')}")
    return a.group("token"), m.group("authzid") or "", pairs


def error_json(status: str, scope: str | None) -> str:
    """Kafka's error challenge, spelt as OAuthBearerSaslServer spells it."""
    text = f'{{"status":"{status}"'
    if scope is not None:
        text += f', "scope":"{scope}"'
    return text + "}"


class OAuthBearerExchange:
    """The server's side of one OAUTHBEARER authentication."""

    def __init__(self, validate: Validator, clock: Callable[[], float] = time.time):
        self.validate = validate
        self.clock = clock
        self.complete = False
        self.user: str | None = None
        self.lifetime_ms = 0
        self.extensions: dict[str, str] = {}
        self._error: str | None = None
        self._reason: str | None = None

    def step(self, token: bytes) -> bytes:
        if self.complete:
            raise SaslFailure(GENERIC.format("authentication", MECHANISM), "the OAUTHBEARER exchange is over")
        if token == b"\x01" and self._error is not None:
            # The client's acknowledgement of our error: now it fails.
            raise SaslFailure(self._error, self._reason)
        self._error = None
        value, authzid, extensions = parse_client_message(token)
        try:
            found = self.validate(value)
        except InvalidToken as exc:
            self._error, self._reason = error_json(exc.status, exc.scope), str(exc)
            return self._error.encode()
        if authzid and authzid != found.principal:
            raise SaslFailure(
                f"Authentication failed: Client requested an authorization id ({authzid}) that is different"
                f" from the token's principal name ({found.principal})"
            )
        self.user = found.principal
        self.extensions = extensions
        # At least 1 ms: 0 would read as "never expires".
        self.lifetime_ms = max(1, found.expires_ms - int(self.clock() * 1000))
        self.complete = True
        return b""
