"""SaslSession's KIP-368 rules with time as a parameter: the session
lifetime from the credential and connections.max.reauth.ms, the expiry,
at most one re-authentication a second, the same principal."""

from __future__ import annotations

import pytest

from pybroker.sasl import SaslFailure, SaslSession
from pybroker.sasl.plain import PlainExchange

USERS = {"alice": "a", "bob": "b"}


class Expiring(PlainExchange):
    """PLAIN with a credential that lasts ``lifetime_ms``."""

    def __init__(self, lifetime_ms: int):
        super().__init__(USERS)
        self._life = lifetime_ms

    def step(self, token: bytes) -> bytes:
        reply = super().step(token)
        self.lifetime_ms = self._life
        return reply


def session(limit_ms: int = 0, credential_ms: int = 0) -> SaslSession:
    return SaslSession("L", {"PLAIN": lambda: Expiring(credential_ms)}, {"PLAIN": limit_ms})


@pytest.mark.parametrize("limit,credential,lifetime", [(0, 0, 0), (5000, 0, 5000), (0, 3000, 3000),
                                                        (5000, 3000, 3000), (2000, 3000, 2000)])
def test_the_session_lifetime_is_kafkas(limit, credential, lifetime):
    s = session(limit, credential)
    assert s.choose("PLAIN")
    s.step(b"\x00alice\x00a", now=100.0)
    assert s.lifetime_ms == lifetime
    assert s.expires_at == (None if not lifetime else 100.0 + lifetime / 1000)


def test_reauthentication_at_most_once_a_second_and_as_the_same_principal():
    s = session(limit_ms=10_000)
    s.choose("PLAIN")
    s.step(b"\x00alice\x00a", now=0.0)
    assert not s.expired(10.0) and s.expired(10.01)
    assert s.may_reauthenticate(0.5)
    assert s.reauthenticate("PLAIN", 0.5)
    s.step(b"\x00alice\x00a", now=0.6)
    assert (s.authenticated, s.reauthenticating, s.expires_at) == (True, False, 10.6)
    assert not s.may_reauthenticate(1.4) and s.may_reauthenticate(1.5)
    s.reauthenticate("PLAIN", 1.5)
    with pytest.raises(SaslFailure, match="^Cannot change principals during re-authentication from User.alice: User.bob$"):
        s.step(b"\x00bob\x00b", now=1.6)
    assert s.failed


def test_a_reauthentication_with_another_mechanism_is_refused_after_its_handshake():
    s = SaslSession("L", {"PLAIN": lambda: PlainExchange(USERS), "X": lambda: PlainExchange(USERS)}, {"PLAIN": 1})
    s.choose("PLAIN")
    s.step(b"\x00alice\x00a", now=0.0)
    assert s.reauthenticate("X", 2.0) and s.bad_mechanism == (
        "SASL mechanism 'X' requested by client is not supported for re-authentication of mechanism 'PLAIN'")
    assert not s.reauthenticate("NOPE", 4.0)
