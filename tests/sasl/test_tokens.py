"""The OAUTHBEARER validators with a fixed clock: Kafka's unsecured rules
(skew, iat, scope) and the signed ones (every algorithm, nbf, claims)."""

from __future__ import annotations

import pytest

from pybroker.sasl.jwks import JsonWebKeys, parse_jwks
from pybroker.sasl.oauthbearer import InvalidToken, OAuthBearerExchange
from pybroker.sasl.signed import SignedValidator
from pybroker.sasl.unsecured import UnsecuredValidator

from ..broker.oauth_tokens import SigningKey, client_message, jwks, signed, unsecured

NOW = 1_700_000_000.0


def clock():
    return NOW


def test_unsecured_skew_iat_and_scope():
    v = UnsecuredValidator({"unsecuredValidatorAllowableClockSkewMs": "2000",
                            "unsecuredValidatorRequiredScope": "a"}, clock=clock)
    assert v(unsecured({"sub": "x", "exp": NOW - 1, "scope": ["a"]})).principal == "x"  # within the skew
    with pytest.raises(InvalidToken, match="was on or after the Expiration Time"):
        v(unsecured({"sub": "x", "exp": NOW - 2, "scope": "a"}))
    with pytest.raises(InvalidToken, match="The Issued At value"):
        v(unsecured({"sub": "x", "exp": NOW + 60, "iat": NOW + 3, "scope": "a"}))
    with pytest.raises(InvalidToken) as info:
        v(unsecured({"sub": "x", "exp": NOW + 60, "scope": "a b"}))  # one scope "a b", as Kafka reads a string
    assert (info.value.status, info.value.scope) == ("insufficient_scope", "[a]")
    with pytest.raises(ValueError, match="Invalid scope value"):
        UnsecuredValidator({"unsecuredValidatorRequiredScope": 'a "b'})


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "PS512", "ES256", "ES384", "ES512"])
def test_every_algorithm(alg):
    key = SigningKey("k", alg)
    v = SignedValidator(JsonWebKeys("file:///keys", keys=parse_jwks(jwks(key))), clock=clock)
    body = {"sub": "alice", "iat": int(NOW), "exp": int(NOW) + 60, "scope": ["r", "w"]}
    token = v(signed(key, body))
    assert (token.principal, token.expires_ms, token.scope) == ("alice", (int(NOW) + 60) * 1000, {"r", "w"})
    # Without a kid, the keys fit for the algorithm are tried.
    assert v(signed(key, body, {"kid": None})).principal == "alice"


@pytest.mark.parametrize("body,why", [
    ({"sub": "a", "exp": NOW + 60}, "No Issued At (iat) claim present."),
    ({"sub": "a", "iat": NOW, "exp": NOW + 60, "nbf": NOW + 100}, "The JWT is not yet valid"),
    ({"iat": NOW, "exp": NOW + 60}, "sub value must be non-null"),
    ({"sub": "a", "iat": NOW, "exp": NOW + 60, "scope": ["r", "r"]}, "must not contain duplicates"),
    ({"sub": "a", "iat": NOW, "exp": NOW + 60, "aud": "x"}, "no expected audience value(s) were provided"),
])
def test_signed_claims(body, why):
    key = SigningKey("k", "ES256")
    v = SignedValidator(JsonWebKeys("file:///keys", keys=parse_jwks(jwks(key))), clock=clock)
    with pytest.raises(InvalidToken, match=why.replace("(", r"\(").replace(")", r"\)")):
        v(signed(key, body))


def test_the_exchange_takes_the_tokens_lifetime():
    v = UnsecuredValidator({}, clock=clock)
    exchange = OAuthBearerExchange(v, clock=clock)
    assert exchange.step(client_message(unsecured({"sub": "x", "exp": NOW + 90}))) == b""
    assert (exchange.complete, exchange.user, exchange.lifetime_ms) == (True, "x", 90_000)
