"""The client's side of a SASL login, for pybroker's own clients (the
admin CLI's blocking connection, one broker's link to another): which
requests to send, in what order, from the mechanism and the credentials.
No I/O: the caller sends each request and hands back the answer,

    login = SaslLogin(mechanism, user, password)
    answer = send(login.handshake())
    while (request := login.next(answer)) is not None:
        answer = send(request)

PLAIN is one token. SCRAM is client-first, then client-final from the
server's first message, then the server's signature checked: a broker
that cannot prove it knows the credential is refused. Any failure is a
``SaslRefused``.
"""

from __future__ import annotations

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.messages.sasl_authenticate_request import SaslAuthenticateRequest
from pybroker.protocol.messages.sasl_handshake_request import SaslHandshakeRequest

from .scram import ScramClient
from .session import SaslFailure


class SaslRefused(Exception):
    """The login failed. ``api`` names the request the broker refused
    (``SaslHandshake``, with ``enabled`` its mechanisms, or
    ``SaslAuthenticate``), ``error_code`` and ``message`` its answer
    (``message`` None when it gave no words). ``api`` is None when this
    client refused the broker's answer (a SCRAM message that is not valid or
    not signed with the credential): SASL_AUTHENTICATION_FAILED, in this
    client's words."""

    def __init__(self, api: str | None, error_code: int, message: str | None, enabled: tuple[str, ...] = ()):
        super().__init__(message or f"{api} refused: {ErrorCode.for_code(error_code).name}")
        self.api = api
        self.error_code = error_code
        self.message = message
        self.enabled = enabled


class SaslLogin:
    """One login: ``handshake()`` first, then ``next(answer)`` with each of
    the broker's answers in turn."""

    def __init__(self, mechanism: str, user: str, password: str):
        self.mechanism = mechanism
        self._scram = None if mechanism == "PLAIN" else ScramClient(mechanism, user, password)
        self._first = f"\0{user}\0{password}".encode() if self._scram is None else self._scram.first()
        # What the answer handed to next() is to: handshake, first, final
        # (SCRAM's client-final), then done.
        self._step = "handshake"

    @property
    def complete(self) -> bool:
        return self._step == "done"

    def handshake(self) -> SaslHandshakeRequest:
        return SaslHandshakeRequest(mechanism=self.mechanism)

    def next(self, answer) -> SaslAuthenticateRequest | None:
        """The request that follows ``answer`` (a SaslHandshakeResponse,
        then SaslAuthenticateResponses), or None once logged in."""
        step = self._step
        if step == "done":
            raise RuntimeError("the SASL login is over")
        if answer.error_code:
            if step == "handshake":
                raise SaslRefused("SaslHandshake", answer.error_code, None, tuple(answer.mechanisms))
            raise SaslRefused("SaslAuthenticate", answer.error_code, answer.error_message)
        if step == "handshake":
            self._step = "first"
            return SaslAuthenticateRequest(auth_bytes=self._first)
        try:
            if step == "first" and self._scram is not None:
                token = self._scram.final(bytes(answer.auth_bytes))
                self._step = "final"
                return SaslAuthenticateRequest(auth_bytes=token)
            if step == "final":
                self._scram.verify(bytes(answer.auth_bytes))
        except SaslFailure as exc:
            raise SaslRefused(None, ErrorCode.SASL_AUTHENTICATION_FAILED, str(exc)) from None
        self._step = "done"
        return None
