"""JSON Web Key Sets (RFC 7517) and JWS signature checks (RFC 7515/7518)
for signed OAUTHBEARER tokens: RS256/384/512, PS256/384/512 and
ES256/384/512, with the ``cryptography`` package.

``JsonWebKeys`` holds a set's keys as last read; who reads them (a file
at start, an HTTPS endpoint now and then) is pybroker.oauth_keys' job. A
token names its key by ``kid``; without one, every key fit for its
algorithm is tried, as jose4j's selector does.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

log = logging.getLogger("pybroker.sasl")

_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_CURVES = {"P-256": (ec.SECP256R1, "ES256"), "P-384": (ec.SECP384R1, "ES384"), "P-521": (ec.SECP521R1, "ES512")}
ALGORITHMS = tuple(f"{family}{bits}" for family in ("RS", "PS", "ES") for bits in ("256", "384", "512"))


class JwksError(ValueError):
    pass


def b64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def _int(text: str) -> int:
    return int.from_bytes(b64url(text), "big")


@dataclass(frozen=True)
class Jwk:
    kid: str | None
    kty: str
    alg: str | None
    use: str | None
    crv: str | None
    key: object
    # As the set listed it, for the log.
    text: str

    def fits(self, alg: str) -> bool:
        if self.use not in (None, "sig") or (self.alg is not None and self.alg != alg):
            return False
        if self.kty == "RSA":
            return alg[:2] in ("RS", "PS")
        return self.kty == "EC" and _CURVES[self.crv][1] == alg


def _jwk(entry: dict) -> Jwk:
    kty = entry.get("kty")
    if kty == "RSA":
        key = rsa.RSAPublicNumbers(_int(entry["e"]), _int(entry["n"])).public_key()
    elif kty == "EC":
        curve = _CURVES[entry["crv"]][0]()
        key = ec.EllipticCurvePublicNumbers(_int(entry["x"]), _int(entry["y"]), curve).public_key()
    else:
        raise ValueError(f"key type {kty!r} is not served")
    shown = {k: entry[k] for k in ("kty", "kid", "use", "alg", "crv") if k in entry}
    return Jwk(entry.get("kid"), kty, entry.get("alg"), entry.get("use"), entry.get("crv"), key, json.dumps(shown))


def parse_jwks(text: str | bytes) -> list[Jwk]:
    """The usable keys of a JWKS document; JwksError if it is not one. A
    key that cannot be used is skipped (jose4j skips it too)."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwksError(f"not a JSON Web Key Set: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksError('not a JSON Web Key Set: no "keys" list')
    keys = []
    for entry in doc["keys"]:
        try:
            keys.append(_jwk(entry))
        except (KeyError, TypeError, ValueError) as exc:
            log.debug("ignoring a key of a JWKS: %s", exc)
    return keys


@dataclass
class JsonWebKeys:
    """The keys of one JWKS location, replaced whole on each refresh."""

    location: str
    # sasl.oauthbearer.jwks.endpoint.refresh.ms and the retry backoffs (HTTP(S) only).
    refresh_ms: int = 3_600_000
    backoff_ms: int = 100
    backoff_max_ms: int = 10_000
    keys: list[Jwk] = field(default_factory=list)
    # Told of a kid no key has (oauth_keys then refreshes sooner).
    on_missing: Callable[[str], None] | None = None

    def candidates(self, alg: str, kid: str | None) -> list[Jwk]:
        found = [k for k in self.keys if k.fits(alg) and (kid is None or k.kid == kid)]
        if not found and kid is not None and self.on_missing is not None:
            self.on_missing(kid)
        return found


def verify(alg: str, jwk: Jwk, signed: bytes, signature: bytes) -> bool:
    digest = _HASHES[alg[2:]]()
    try:
        if alg.startswith("RS"):
            jwk.key.verify(signature, signed, padding.PKCS1v15(), digest)
        elif alg.startswith("PS"):
            jwk.key.verify(signature, signed, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
        else:
            # JOSE signs with r || s, each the curve's size.
            size = (jwk.key.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
            jwk.key.verify(der, signed, ec.ECDSA(digest))
    except InvalidSignature:
        return False
    return True
