"""SaslAuthenticate v0-2 (api key 36, KIP-152): the SASL exchange after
SaslHandshake. v1 adds the session lifetime (0: no re-authentication
required), v2 is flexible.

PLAIN takes one token, SCRAM two. A refused one is answered
SASL_AUTHENTICATION_FAILED with the mechanism's message (Kafka's words,
which never say whether the user exists) after
connection.failed.authentication.delay.ms, then the connection is closed;
every failure is one log line naming the peer and the listener.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.sasl_authenticate_response import SaslAuthenticateResponse
from pybroker.protocol.registry import ApiKey
from pybroker.sasl import SaslFailure
from pybroker.sasl.session import GENERIC

from . import CloseConnection, Hold, handles

if TYPE_CHECKING:
    from ..config import BrokerConfig

log = logging.getLogger("pybroker.sasl")


@handles(ApiKey.SASL_AUTHENTICATE, 0, 2)
def sasl_authenticate(ctx, req, *, config: BrokerConfig):
    session = ctx.session
    if session is not None and session.authenticated and not session.reauthenticating:
        # KafkaApis' answer: the connection stays.
        return SaslAuthenticateResponse(
            error_code=ErrorCode.ILLEGAL_SASL_STATE,
            error_message="SaslAuthenticate request received after successful authentication",
            auth_bytes=b"",
        )
    if session is None or session.mechanism is None:
        if session is not None:
            session.failed = True
        return SaslAuthenticateResponse(
            error_code=ErrorCode.ILLEGAL_SASL_STATE,
            error_message="SaslAuthenticate is valid after a SaslHandshake on a SASL listener, once",
            auth_bytes=b"",
        )
    delay = config["connection.failed.authentication.delay.ms"] / 1000
    if session.bad_mechanism is not None:
        # Kafka sends nothing back: the connection closes after the delay.
        log.info("failed re-authentication with %s on listener %s: %s", ctx.peer, session.listener,
                 session.bad_mechanism)

        async def close():
            await trio.sleep(delay)
            raise CloseConnection("SASL re-authentication refused")

        return Hold(close)
    mechanism = session.mechanism
    again = "re-" if session.reauthenticating else ""
    try:
        reply = session.step(bytes(req.auth_bytes))
    except SaslFailure as exc:
        message = str(exc)
        message_logged = f"{message} ({exc.detail})" if exc.detail else message
    except Exception:
        # The mechanism's own fault: logged with its traceback, and the
        # client refused in Kafka's general words.
        log.exception("SASL %s exchange with %s failed", mechanism, ctx.peer)
        message_logged = "(see the traceback above)"
        message = GENERIC.format(f"{again}authentication", mechanism)
    else:
        if session.authenticated:
            log.debug("%s %sauthenticated as %s on listener %s, session lifetime %d ms", ctx.peer, again,
                      session.principal, session.listener, session.lifetime_ms)
        return SaslAuthenticateResponse(
            error_code=ErrorCode.NONE, auth_bytes=reply, session_lifetime_ms=session.lifetime_ms
        )
    log.info("failed %sauthentication with %s on listener %s (%s): %s", again, ctx.peer, session.listener, mechanism,
             message_logged)

    async def refuse():
        # Kafka's brake on password guessing: each failure costs the
        # guesser this long, and no one else anything.
        await trio.sleep(delay)
        return SaslAuthenticateResponse(
            error_code=ErrorCode.SASL_AUTHENTICATION_FAILED, error_message=message, auth_bytes=b""
        )

    return Hold(refuse)
