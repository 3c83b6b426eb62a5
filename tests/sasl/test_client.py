"""SaslLogin, the client's side of a login, against the broker's own
exchanges (plain.py, scram.py) with no sockets: the requests in order,
and each refusal as one SaslRefused."""

from __future__ import annotations

import pytest

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.sasl_authenticate_response import SaslAuthenticateResponse
from pybroker.protocol.messages.sasl_handshake_response import SaslHandshakeResponse
from pybroker.sasl import SaslFailure
from pybroker.sasl.client import SaslLogin, SaslRefused
from pybroker.sasl.plain import PlainExchange
from pybroker.sasl.scram import ScramExchange, new_credential

ENABLED = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def server(mechanism: str):
    if mechanism == "PLAIN":
        return PlainExchange({"alice": "alice-secret"})
    credential = new_credential(mechanism, "alice-secret")
    return ScramExchange(mechanism, lambda user: credential if user == "alice" else None)


def log_in(login: SaslLogin, exchange) -> int:
    """Runs the login against ``exchange`` as a broker answers it; the
    number of SaslAuthenticate requests sent."""
    request = login.next(SaslHandshakeResponse(mechanisms=ENABLED))
    sent = 0
    while request is not None:
        sent += 1
        try:
            answer = SaslAuthenticateResponse(auth_bytes=exchange.step(request.auth_bytes))
        except SaslFailure as exc:
            answer = SaslAuthenticateResponse(error_code=ErrorCode.SASL_AUTHENTICATION_FAILED, error_message=str(exc))
        request = login.next(answer)
    return sent


@pytest.mark.parametrize("mechanism,tokens", [("PLAIN", 1), ("SCRAM-SHA-256", 2), ("SCRAM-SHA-512", 2)])
def test_a_login_sends_the_mechanisms_tokens_in_turn(mechanism, tokens):
    login = SaslLogin(mechanism, "alice", "alice-secret")
    assert login.handshake().mechanism == mechanism
    exchange = server(mechanism)
    assert log_in(login, exchange) == tokens
    assert login.complete and exchange.complete and exchange.user == "alice"
    with pytest.raises(RuntimeError):
        login.next(SaslAuthenticateResponse())


def test_a_refused_handshake_names_the_mechanisms_enabled():
    login = SaslLogin("SCRAM-SHA-512", "alice", "alice-secret")
    refused = SaslHandshakeResponse(error_code=ErrorCode.UNSUPPORTED_SASL_MECHANISM, mechanisms=["PLAIN"])
    with pytest.raises(SaslRefused) as exc:
        login.next(refused)
    assert (exc.value.api, exc.value.error_code, exc.value.enabled) == (
        "SaslHandshake", ErrorCode.UNSUPPORTED_SASL_MECHANISM, ("PLAIN",))
    assert not login.complete


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_a_wrong_password_is_refused_in_the_brokers_words(mechanism):
    with pytest.raises(SaslRefused) as exc:
        log_in(SaslLogin(mechanism, "alice", "wrong"), server(mechanism))
    assert exc.value.api == "SaslAuthenticate"
    assert exc.value.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert exc.value.message.startswith("Authentication failed")


def test_a_broker_that_does_not_know_the_credential_is_refused():
    login = SaslLogin("SCRAM-SHA-256", "alice", "alice-secret")
    exchange = server("SCRAM-SHA-256")
    first = login.next(SaslHandshakeResponse(mechanisms=ENABLED))
    final = login.next(SaslAuthenticateResponse(auth_bytes=exchange.step(first.auth_bytes)))
    exchange.step(final.auth_bytes)
    with pytest.raises(SaslRefused) as exc:
        login.next(SaslAuthenticateResponse(auth_bytes=b"v=bm90IHRoZSBzaWduYXR1cmU="))
    assert (exc.value.api, exc.value.error_code) == (None, ErrorCode.SASL_AUTHENTICATION_FAILED)
    assert "signature is wrong" in str(exc.value)
    assert not login.complete
