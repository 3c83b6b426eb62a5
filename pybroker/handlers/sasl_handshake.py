"""SaslHandshake v1 (api key 17): a SASL listener's client picks its
mechanism. Version 0, whose authentication follows as raw SASL tokens
outside Kafka's framing, is not served (clients of the last seven years
send v1 and SaslAuthenticate).

An enabled mechanism is accepted; another is answered
UNSUPPORTED_SASL_MECHANISM with the enabled ones, and the connection
closed, as Kafka's SaslServerAuthenticator does. On a listener without
SASL, or once authenticated, the answer is ILLEGAL_SASL_STATE, except
where a session has an expiry (KIP-368): then the handshake starts a
re-authentication (at most once a second). Kafka answers a re-authentication
with another mechanism as any handshake, and refuses its SaslAuthenticate.
"""

from __future__ import annotations

import logging
import time

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.sasl_handshake_response import SaslHandshakeResponse
from pybroker.protocol.registry import ApiKey

from . import handles

log = logging.getLogger("pybroker.sasl")


@handles(ApiKey.SASL_HANDSHAKE, 1, 1)
def sasl_handshake(ctx, req):
    session = ctx.session
    if session is None:
        return SaslHandshakeResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE, mechanisms=[])
    enabled = sorted(session.mechanisms)
    if session.may_reauthenticate(time.monotonic()):
        chosen = session.reauthenticate(req.mechanism, time.monotonic())
    elif session.authenticated or session.mechanism is not None:
        return SaslHandshakeResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE, mechanisms=enabled)
    else:
        chosen = session.choose(req.mechanism)
    if not chosen:
        session.failed = True
        log.info("SASL handshake from %s on listener %s: mechanism %r is not enabled (%s)",
                 ctx.peer, session.listener, req.mechanism, ", ".join(enabled))
        return SaslHandshakeResponse(error_code=ErrorCode.UNSUPPORTED_SASL_MECHANISM, mechanisms=enabled)
    return SaslHandshakeResponse(error_code=ErrorCode.NONE, mechanisms=enabled)
