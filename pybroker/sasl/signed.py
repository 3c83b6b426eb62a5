"""Kafka's OAUTHBEARER validator for signed tokens (KIP-768,
OAuthBearerValidatorCallbackHandler): a JWT signed by a key of the
identity provider's JWKS, with the claims checked as Kafka's jose4j
consumer checks them:

- the signature (``alg: none`` refused), by the key the ``kid`` names;
- ``exp`` and ``iat`` required; ``exp`` and ``nbf`` with
  ``sasl.oauthbearer.clock.skew.seconds`` of leeway;
- ``aud``: one of ``sasl.oauthbearer.expected.audience``; when none is
  expected, a token that names an audience is refused (jose4j's rule);
- ``iss``: ``sasl.oauthbearer.expected.issuer``, when set;
- the principal from ``sasl.oauthbearer.sub.claim.name``, the scope from
  ``sasl.oauthbearer.scope.claim.name``.

The client learns only ``{"status":"invalid_token"}``; the reason goes to
the broker's log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from .jwks import ALGORITHMS, JsonWebKeys, b64url, verify
from .oauthbearer import InvalidToken, Token
from .unsecured import b64url_json

HANDLER = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
# Its name before Kafka 3.4 (still accepted by Kafka).
OLD_HANDLER = "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerValidatorCallbackHandler"


@dataclass
class SignedValidator:
    keys: JsonWebKeys
    audience: tuple[str, ...] = ()
    issuer: str | None = None
    sub_claim: str = "sub"
    scope_claim: str = "scope"
    skew_s: int = 30
    clock: Callable[[], float] = time.time

    def __call__(self, token: str) -> Token:
        try:
            return self._validate(token)
        except InvalidToken as exc:
            raise InvalidToken(f"Could not validate the access token: {exc}") from None

    def _validate(self, token: str) -> Token:
        parts = _sections(token.strip())
        header = b64url_json(parts[0], "header")
        claims = b64url_json(parts[1], "payload")
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise InvalidToken("the header and the payload must be JSON objects")
        alg = header.get("alg")
        if alg == "none":
            raise InvalidToken("'none' is not a permitted algorithm")
        if alg not in ALGORITHMS:
            raise InvalidToken(f"the algorithm {alg!r} is not served (only {', '.join(ALGORITHMS)})")
        kid = header.get("kid")
        candidates = self.keys.candidates(alg, kid if isinstance(kid, str) else None)
        if not candidates:
            raise InvalidToken(
                f"Unable to find a suitable verification key for JWS w/ header {_compact(header)} from JWKs"
                f" [{', '.join(k.text for k in self.keys.keys)}] obtained from {self.keys.location}")
        try:
            signature = b64url(parts[2])
        except ValueError:
            raise InvalidToken("the signature is not base64url") from None
        signed = f"{parts[0]}.{parts[1]}".encode("ascii", "replace")
        if not any(verify(alg, key, signed, signature) for key in candidates):
            raise InvalidToken(f"JWS signature is invalid: {_compact(header)}")
        return self._claims(claims)

    def _claims(self, claims: dict) -> Token:
        now = int(self.clock())
        exp, iat, nbf = (_date(claims, name) for name in ("exp", "iat", "nbf"))
        if exp is None:
            raise InvalidToken("No Expiration Time (exp) claim present.")
        if iat is None:
            raise InvalidToken("No Issued At (iat) claim present.")
        leeway = f" (even when providing {self.skew_s} seconds of leeway to account for clock skew)."
        if now - self.skew_s >= exp:
            raise InvalidToken(f"The JWT is no longer valid - the evaluation time {now} is on or after the"
                               f" Expiration Time (exp={exp}) claim value{leeway}")
        if nbf is not None and now + self.skew_s < nbf:
            raise InvalidToken(f"The JWT is not yet valid as the evaluation time {now} is before the Not Before"
                               f" (nbf={nbf}) claim time{leeway}")
        self._check_audience(claims.get("aud"))
        if self.issuer is not None:
            iss = claims.get("iss")
            if iss is None:
                raise InvalidToken("No Issuer (iss) claim present.")
            if iss != self.issuer:
                raise InvalidToken(f"Issuer (iss) claim value ({iss}) doesn't match expected value of {self.issuer}")
        sub = claims.get(self.sub_claim)
        if sub is not None and not isinstance(sub, str):
            raise InvalidToken(f"Could not extract the '{self.sub_claim}' claim from the access token")
        principal = _text(self.sub_claim, sub)
        return Token(principal, exp * 1000, frozenset(self._scope(claims.get(self.scope_claim))))

    def _check_audience(self, aud) -> None:
        if aud is None:
            if self.audience:
                raise InvalidToken("No Audience (aud) claim present.")
            return
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
        if audiences is None:
            raise InvalidToken("The value of the 'aud' claim is not a string or an array of strings")
        if not any(a in self.audience for a in audiences):
            why = (" doesn't contain an acceptable identifier." if self.audience
                   else " present in the JWT but no expected audience value(s) were provided to the JWT Consumer.")
            expected = "[" + ", ".join(self.audience) + "]"
            raise InvalidToken(f"Audience (aud) claim [{', '.join(map(str, audiences))}]{why}"
                               f" Expected one of {expected} as an aud value.")

    def _scope(self, raw) -> set[str]:
        items = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        found: set[str] = set()
        for item in items:
            item = _text(self.scope_claim, item if isinstance(item, str) else None)
            if item in found:
                raise InvalidToken(f"{self.scope_claim} value must not contain duplicates - {item} already present")
            found.add(item)
        return found


def _sections(token: str) -> list[str]:
    if not token:
        raise InvalidToken("Empty JWT provided; expected three sections (header, payload, and signature)")
    # As Java's String.split: trailing empty sections are dropped, so an
    # unsigned token ("h.p.") has two.
    parts = token.split(".")
    while parts and not parts[-1]:
        parts.pop()
    if len(parts) != 3:
        raise InvalidToken(f"Malformed JWT provided ({token}); expected three sections (header, payload, and"
                           f" signature), but {len(parts)} sections provided")
    for part, name in zip(parts, ("header", "payload", "signature")):
        if not part.strip():
            raise InvalidToken("Malformed JWT provided; expected at least three sections (header, payload, and"
                               f" signature), but {name} section missing")
    return parts


def _date(claims: dict, name: str) -> int | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"The value of the '{name}' claim is not numeric")
    return int(value)


def _text(name: str, value: str | None) -> str:
    if value is None:
        raise InvalidToken(f"{name} value must be non-null")
    if not value:
        raise InvalidToken(f"{name} value must be non-empty")
    if not value.strip():
        raise InvalidToken(f"{name} value must not contain only whitespace")
    return value.strip()


def _compact(header: dict) -> str:
    return json.dumps(header, separators=(",", ":"))
