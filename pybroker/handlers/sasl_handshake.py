"""SaslHandshake v0-1 (api key 17): a SASL listener's client picks its
mechanism. After v1 the exchange comes in SaslAuthenticate requests;
after v0 it comes as bare SASL tokens, each after its size, answered the
same way (the server's Connection takes them), as older librdkafka
(Debian's kcat) and sarama by default send it. A re-authentication is v1.

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


@handles(ApiKey.SASL_HANDSHAKE, 0, 1)
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
        session.raw_tokens = chosen and ctx.api_version == 0
    if not chosen:
        session.failed = True
        log.info("SASL handshake from %s on listener %s: mechanism %r is not enabled (%s)",
                 ctx.peer, session.listener, req.mechanism, ", ".join(enabled))
        return SaslHandshakeResponse(error_code=ErrorCode.UNSUPPORTED_SASL_MECHANISM, mechanisms=enabled)
    return SaslHandshakeResponse(error_code=ErrorCode.NONE, mechanisms=enabled)
