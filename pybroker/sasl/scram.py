"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka's
ScramSaslServer serves them, and Kafka's stored form of a credential.

A credential is the salt, the iteration count, and two keys derived from
the salted password: StoredKey = H(HMAC(salted, "Client Key")) checks the
client's proof, ServerKey = HMAC(salted, "Server Key") signs the server's
answer. The password itself is never kept. Kafka writes a credential as
``salt=<b64>,stored_key=<b64>,server_key=<b64>,iterations=<n>``
(ScramCredentialUtils), in ZooKeeper under ``/config/users/<user>``.

No channel binding (a client asking for it is refused); the ``tokenauth``
extension (delegation tokens) is not served: such a client is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from .session import SaslFailure

HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
# AlterUserScramCredentials' mechanism codes (ScramMechanism.type).
MECHANISM_TYPES = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
TYPE_OF = {name: code for code, name in MECHANISM_TYPES.items()}
# ScramMechanism.minIterations; AlterUserScramCredentials also refuses
# more than MAX_ITERATIONS (ZkAdminManager).
MIN_ITERATIONS = 4096
MAX_ITERATIONS = 16384

_CREDENTIAL = re.compile(r"salt=([^,]*),stored_key=([^,]*),server_key=([^,]*),iterations=(\d+)")
# Kafka's answer for a failure it does not explain (SaslServerAuthenticator).
_GENERIC = "Authentication failed during authentication due to invalid credentials with SASL mechanism {}"


@dataclass(frozen=True)
class ScramCredential:
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def salted_password(mechanism: str, password: bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac(HASHES[mechanism], password, salt, iterations)


def credential_from_salted(mechanism: str, salt: bytes, salted: bytes, iterations: int) -> ScramCredential:
    digest = HASHES[mechanism]
    client_key = hmac.digest(salted, b"Client Key", digest)
    return ScramCredential(
        salt=salt,
        stored_key=hashlib.new(digest, client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", digest),
        iterations=iterations,
    )


def new_credential(mechanism: str, password: str, iterations: int = MIN_ITERATIONS) -> ScramCredential:
    salt = secrets.token_bytes(32)
    return credential_from_salted(mechanism, salt, salted_password(mechanism, password.encode(), salt, iterations),
                                  iterations)


def encode_credential(credential: ScramCredential) -> str:
    return (f"salt={_b64(credential.salt)},stored_key={_b64(credential.stored_key)},"
            f"server_key={_b64(credential.server_key)},iterations={credential.iterations}")


def decode_credential(text: str) -> ScramCredential:
    """ValueError when ``text`` is not Kafka's form of a credential."""
    m = _CREDENTIAL.fullmatch(text.strip())
    if m is None:
        raise ValueError("not a SCRAM credential (salt=...,stored_key=...,server_key=...,iterations=N)")
    try:
        salt, stored, server = (base64.b64decode(m.group(i), validate=True) for i in (1, 2, 3))
    except ValueError:
        raise ValueError("a SCRAM credential's salt or keys are not base64") from None
    return ScramCredential(salt, stored, server, int(m.group(4)))


def _attributes(message: str) -> list[tuple[str, str]]:
    pairs = []
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=" or not part[0].isalpha():
            raise SaslFailure("Authentication failed: Invalid SCRAM message")
        pairs.append((part[0], part[2:]))
    return pairs


def _username(sasl_name: str) -> str:
    """RFC 5802's saslname: ``,`` and ``=`` travel as ``=2C`` and ``=3D``;
    any other ``=`` is malformed."""
    if re.search(r"=(?!2C|3D)", sasl_name):
        raise SaslFailure("Authentication failed: Invalid SCRAM user name")
    return sasl_name.replace("=2C", ",").replace("=3D", "=")


class ScramExchange:
    """The server's side: client-first, server-first, client-final,
    server-final. ``credentials(user)`` is the stored credential for this
    mechanism, or None."""

    def __init__(self, mechanism: str, credentials: Callable[[str], ScramCredential | None]):
        self.mechanism = mechanism
        self.digest = HASHES[mechanism]
        self.credentials = credentials
        self.complete = False
        self.user: str | None = None
        self.lifetime_ms = 0
        self._state = "first"
        self._credential: ScramCredential | None = None
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""

    def step(self, token: bytes) -> bytes:
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslFailure("Authentication failed: Invalid SCRAM message") from None
        if self._state == "first":
            return self._first(text)
        if self._state == "final":
            return self._final(text)
        raise SaslFailure("Authentication failed: the SCRAM exchange is over")

    def _first(self, text: str) -> bytes:
        # gs2-header: a flag (only "n": no channel binding), an optional
        # authzid, then the bare message.
        m = re.fullmatch(r"([^,]*),(?:a=([^,]*))?,(.*)", text, re.DOTALL)
        if m is None or m.group(1) != "n":
            raise SaslFailure("Authentication failed: Invalid SCRAM client first message")
        bare = m.group(3)
        parts = bare.split(",")
        attrs = _attributes(",".join(parts[:2]))
        if len(attrs) != 2 or attrs[0][0] != "n" or attrs[1][0] != "r" or not attrs[1][1]:
            raise SaslFailure("Authentication failed: Invalid SCRAM client first message")
        user = _username(attrs[0][1])
        # Extensions (key=value) follow; tokenauth=true asks for a
        # delegation token's credential, which is not served here.
        if "tokenauth=true" in parts[2:]:
            raise SaslFailure(_GENERIC.format(self.mechanism))
        credential = self.credentials(user)
        if credential is None:
            raise SaslFailure(_GENERIC.format(self.mechanism))
        authzid = m.group(2)
        if authzid and _username(authzid) != user:
            raise SaslFailure(
                "Authentication failed: Client requested an authorization id that is different from username")
        if credential.iterations < MIN_ITERATIONS:
            raise SaslFailure(_GENERIC.format(self.mechanism))
        self.user = user
        self._credential = credential
        self._client_first_bare = bare
        self._nonce = attrs[1][1] + secrets.token_urlsafe(24)
        self._server_first = f"r={self._nonce},s={_b64(credential.salt)},i={credential.iterations}"
        self._state = "final"
        return self._server_first.encode()

    def _final(self, text: str) -> bytes:
        attrs = _attributes(text)
        if len(attrs) < 3 or attrs[0][0] != "c" or attrs[1][0] != "r" or attrs[-1][0] != "p":
            raise SaslFailure("Authentication failed: Invalid SCRAM client final message")
        if attrs[0][1] not in ("biws", _b64(b"n,a=" + self.user.encode() + b",")):
            # biws is base64("n,,"): the gs2 header without channel binding.
            raise SaslFailure(_GENERIC.format(self.mechanism))
        # Kafka 3.x takes a nonce that ends with the server's: librdkafka
        # before 2.6.1 (Debian's kcat among them) repeats its own in front.
        if not attrs[1][1].endswith(self._nonce):
            raise SaslFailure(_GENERIC.format(self.mechanism))
        try:
            proof = base64.b64decode(attrs[-1][1], validate=True)
        except ValueError:
            raise SaslFailure(_GENERIC.format(self.mechanism)) from None
        without_proof = text[: text.rindex(",p=")]
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        credential = self._credential
        signature = hmac.digest(credential.stored_key, auth_message, self.digest)
        if len(proof) != len(signature):
            raise SaslFailure(_GENERIC.format(self.mechanism))
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not hmac.compare_digest(hashlib.new(self.digest, client_key).digest(), credential.stored_key):
            raise SaslFailure(_GENERIC.format(self.mechanism))
        self._state = "done"
        self.complete = True
        self._credential = None
        server_signature = hmac.digest(credential.server_key, auth_message, self.digest)
        return f"v={_b64(server_signature)}".encode()


class ScramClient:
    """The client's side, for pybroker's own clients (client.SaslLogin
    drives it): client-first, then client-final from the server's first
    message, then the server's signature checked (a broker that cannot
    prove it knows the credential is refused)."""

    def __init__(self, mechanism: str, user: str, password: str):
        self.mechanism = mechanism
        self.digest = HASHES[mechanism]
        self.password = password.encode()
        name = user.replace("=", "=3D").replace(",", "=2C")
        self.nonce = secrets.token_urlsafe(24)
        self.first_bare = f"n={name},r={self.nonce}"
        self._server_signature = b""

    def first(self) -> bytes:
        return f"n,,{self.first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        attrs = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        if not attrs.get("r", "").startswith(self.nonce) or "s" not in attrs or "i" not in attrs:
            raise SaslFailure(f"the broker's SCRAM answer is not valid: {text!r}")
        salted = salted_password(self.mechanism, self.password, base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.digest(salted, b"Client Key", self.digest)
        without_proof = f"c=biws,r={attrs['r']}"
        message = f"{self.first_bare},{text},{without_proof}".encode()
        signature = hmac.digest(hashlib.new(self.digest, client_key).digest(), message, self.digest)
        self._server_signature = hmac.digest(hmac.digest(salted, b"Server Key", self.digest), message, self.digest)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        return f"{without_proof},p={_b64(proof)}".encode()

    def verify(self, server_final: bytes) -> None:
        if not hmac.compare_digest(server_final.decode(errors="replace"), f"v={_b64(self._server_signature)}"):
            raise SaslFailure("the broker's SCRAM signature is wrong: it does not know this credential")
