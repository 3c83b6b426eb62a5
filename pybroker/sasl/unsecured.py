"""Kafka's default OAUTHBEARER validator on a broker,
OAuthBearerUnsecuredValidatorCallbackHandler: unsigned JWS tokens
(``alg: none``), for development. Its options are OAuthBearerLoginModule's
JAAS options:

- ``unsecuredValidatorPrincipalClaimName`` (default ``sub``): the claim
  naming the principal;
- ``unsecuredValidatorScopeClaimName`` (default ``scope``);
- ``unsecuredValidatorRequiredScope``: space-separated scopes a token must
  all have (refused ``insufficient_scope`` otherwise);
- ``unsecuredValidatorAllowableClockSkewMs`` (default 0).

``exp`` is required, ``iat`` optional; both are seconds, fractions allowed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable

from .oauthbearer import InvalidToken, Token

_PREFIX = "unsecuredValidator"
_SCOPE_ITEM = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def b64url_json(segment: str, what: str = "value") -> object:
    """A JWS segment's JSON. Base64url, padded or not; the standard
    alphabet too, which Kafka's unsecured validator decodes."""
    try:
        raw = base64.b64decode(segment.replace("-", "+").replace("_", "/") + "=" * (-len(segment) % 4),
                               validate=True)
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed Base64 URL encoded value") from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken(f"malformed JSON in the {what}") from None


def _java_list(items) -> str:
    return "[" + ", ".join(items) + "]"


class UnsecuredValidator:
    """A validator (``validate(token) -> Token``) built from the JAAS
    options; ValueError at configuration for a bad option."""

    def __init__(self, options: dict[str, str], clock: Callable[[], float] = time.time):
        self.principal_claim = (options.get(_PREFIX + "PrincipalClaimName") or "").strip() or "sub"
        self.scope_claim = (options.get(_PREFIX + "ScopeClaimName") or "").strip() or "scope"
        self.required_scope = []
        for item in (options.get(_PREFIX + "RequiredScope") or "").strip().split(" "):
            if item and not _SCOPE_ITEM.fullmatch(item):
                raise ValueError(f"Invalid scope value: {item}")
            if item:
                self.required_scope.append(item)
        skew = (options.get(_PREFIX + "AllowableClockSkewMs") or "").strip() or "0"
        try:
            self.skew_ms = int(skew)
        except ValueError:
            raise ValueError(f"{_PREFIX}AllowableClockSkewMs: not a number: {skew}") from None
        if self.skew_ms < 0:
            raise ValueError(f"Allowable clock skew millis must not be negative: {skew}")
        self.clock = clock

    def __call__(self, token: str) -> Token:
        claims = self._claims(token)
        scope = self._scope(claims)
        exp = _number(claims, "exp")
        if exp is None:
            raise InvalidToken("No expiration time in JWT")
        principal = claims.get(self.principal_claim)
        if not isinstance(principal, str) or not principal.strip():
            raise InvalidToken(f"No principal name in JWT claim: {self.principal_claim}")
        now = int(self.clock() * 1000)
        iat = _number(claims, "iat")
        if iat is not None and 1000 * iat > now + self.skew_ms:
            raise InvalidToken(
                f"The Issued At value ({iat:f} seconds) was after the indicated time ({now} ms) plus allowable"
                f" clock skew ({self.skew_ms} ms)")
        if now - self.skew_ms >= 1000 * exp:
            raise InvalidToken(
                f"The indicated time ({now} ms) minus allowable clock skew ({self.skew_ms} ms) was on or after"
                f" the Expiration Time value ({exp:f} seconds)")
        if iat is not None and exp <= iat:
            raise InvalidToken(
                f"The Expiration Time time ({exp:f} seconds) was not after the Issued At time ({iat:f} seconds)")
        for item in self.required_scope:
            if item not in scope:
                raise InvalidToken(
                    f"The provided scope ({_java_list(sorted(scope))}) was missing a required scope ({item}).  All"
                    f" required scope elements: {_java_list(self.required_scope)}",
                    "insufficient_scope", _java_list(self.required_scope))
        return Token(principal, round(exp * 1000), frozenset(scope))

    def _claims(self, token: str) -> dict:
        if ".." in token:
            raise InvalidToken("Malformed compact serialization contains '..'")
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("Unsecured JWS compact serializations must have 3 dot-separated Base64URL-encoded values")
        header = b64url_json(parts[0], "header")
        claims = b64url_json(parts[1], "claims")
        if not isinstance(header, dict) or not isinstance(claims, dict) or "alg" not in header:
            raise InvalidToken("JWS header must have an Algorithm value")
        if header["alg"] != "none":
            raise InvalidToken("Unsecured JWS must have 'none' for an algorithm")
        if parts[2]:
            raise InvalidToken("Unsecured JWS must not contain a digital signature")
        return claims

    def _scope(self, claims: dict) -> set[str]:
        value = claims.get(self.scope_claim)
        if value is None:
            return set()
        if isinstance(value, str):
            # One scope, spaces and all, as Kafka reads a string claim.
            return {value.strip()} if value.strip() else set()
        if not isinstance(value, list):
            raise InvalidToken(f"The '{self.scope_claim}' claim was not of type List: {type(value).__name__}")
        return {str(v).strip() for v in value if str(v).strip()}


def _number(claims: dict, name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"The '{name}' claim was not of type Number: {type(value).__name__}")
    return value
