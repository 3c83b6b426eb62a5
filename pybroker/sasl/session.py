"""One connection's SASL state. The mechanisms' exchanges (plain.py,
scram.py) share one shape: ``step(token)`` answers a client token with the
server's, raises ``SaslFailure`` with the words the client is told, and
sets ``complete`` and ``user`` once the client is known."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class SaslFailure(Exception):
    """The authentication is refused; ``str(exc)`` is the client's message,
    ``detail`` what the broker's log says besides (Kafka tells a client
    little: a token's faults stay in the broker's log)."""

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.detail = detail


class Exchange(Protocol):
    complete: bool
    user: str | None
    # How long the credential stays good (ms), 0 for no limit: a session
    # ends with it (KIP-368).
    lifetime_ms: int

    def step(self, token: bytes) -> bytes: ...


# Kafka's words for a failure it does not explain (SaslServerAuthenticator).
GENERIC = "Authentication failed during {} due to invalid credentials with SASL mechanism {}"
# KafkaChannel: a connection re-authenticates at most once a second; a
# SaslHandshake sooner is answered as on an authenticated connection.
MIN_REAUTH_INTERVAL_S = 1.0


@dataclass
class SaslSession:
    """``mechanisms``: what this listener enables, each with a function
    that opens an exchange; ``max_reauth_ms``: connections.max.reauth.ms
    by mechanism (KIP-368; 0 or absent: no limit but the credential's).

    Re-authentication (KIP-368): once authenticated, a session that has an
    expiry (``expires_at``) may run SaslHandshake and SaslAuthenticate
    again, with the same mechanism, ending as the same principal. A
    session past its expiry may ask nothing else: the connection is closed."""

    listener: str
    mechanisms: dict[str, Callable[[], Exchange]]
    max_reauth_ms: dict[str, int] = field(default_factory=dict)
    mechanism: str | None = None
    principal: str | None = None
    authenticated: bool = False
    # Set with the answer that refuses the client: the connection is
    # closed once that answer is sent.
    failed: bool = False
    attempts: int = field(default=0)
    exchange: Exchange | None = None
    # time.monotonic() past which the session is over (None: never).
    expires_at: float | None = None
    # Between a re-authentication's SaslHandshake and its end.
    reauthenticating: bool = False
    # Set when a re-authentication asked for another mechanism: Kafka
    # answers the handshake, then refuses the exchange.
    bad_mechanism: str | None = None
    # After a SaslHandshake v0: the tokens come bare, not in SaslAuthenticate.
    raw_tokens: bool = False
    _reauth_started: float | None = None
    _lifetime_ms: int = 0

    def choose(self, mechanism: str) -> bool:
        if self.authenticated or self.mechanism is not None or mechanism not in self.mechanisms:
            return False
        self.mechanism = mechanism
        self.exchange = self.mechanisms[mechanism]()
        return True

    def may_reauthenticate(self, now: float) -> bool:
        """A SaslHandshake now would start a re-authentication (Kafka's
        maybeBeginServerReauthentication)."""
        if not self.authenticated or self.reauthenticating or self.expires_at is None:
            return False
        return self._reauth_started is None or now - self._reauth_started >= MIN_REAUTH_INTERVAL_S

    def reauthenticate(self, mechanism: str, now: float) -> bool:
        """Start a re-authentication with ``mechanism``; False if the
        listener does not enable it (refused, as a first handshake is)."""
        if mechanism not in self.mechanisms:
            return False
        self._reauth_started = now
        self.reauthenticating = True
        if mechanism != self.mechanism:
            self.bad_mechanism = (
                f"SASL mechanism '{mechanism}' requested by client is not supported for re-authentication"
                f" of mechanism '{self.mechanism}'"
            )
        else:
            self.exchange = self.mechanisms[mechanism]()
        return True

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now > self.expires_at

    def step(self, token: bytes, now: float | None = None) -> bytes:
        """The server's answer to ``token``; SaslFailure (and ``failed``
        set) when the client is refused. ``authenticated`` and
        ``principal`` are set once the exchange completes."""
        self.attempts += 1
        now = time.monotonic() if now is None else now
        try:
            reply = self.exchange.step(token)
            if self.exchange.complete:
                principal = f"User:{self.exchange.user}"
                if self.reauthenticating and principal != self.principal:
                    raise SaslFailure(
                        "Cannot change principals during re-authentication from"
                        f" {self.principal.replace(':', '.', 1)}: {principal.replace(':', '.', 1)}"
                    )
        except SaslFailure as exc:
            self._fail()
            if self.reauthenticating and str(exc) == GENERIC.format("authentication", self.mechanism):
                raise SaslFailure(GENERIC.format("re-authentication", self.mechanism), exc.detail) from None
            raise
        except Exception:
            # A mechanism's own fault: the client is refused all the same.
            self._fail()
            raise
        if self.exchange.complete:
            self.authenticated = True
            self.reauthenticating = False
            self.principal = principal
            self._lifetime_ms = self._session_lifetime_ms()
            self.expires_at = now + self._lifetime_ms / 1000 if self._lifetime_ms or self._limited() else None
        return reply

    def _fail(self) -> None:
        self.failed = True
        self.exchange = None

    def _limited(self) -> bool:
        return bool(self.exchange.lifetime_ms) or self.max_reauth_ms.get(self.mechanism, 0) > 0

    def _session_lifetime_ms(self) -> int:
        """Kafka's calcCompletionTimesAndReturnSessionLifetimeMs: the
        credential's remaining lifetime, capped by connections.max.reauth.ms."""
        credential = self.exchange.lifetime_ms
        limit = self.max_reauth_ms.get(self.mechanism, 0)
        if limit > 0:
            return max(0, min(credential, limit)) if credential else limit
        return max(0, credential)

    @property
    def lifetime_ms(self) -> int:
        """SaslAuthenticate v1's session_lifetime_ms (0: no limit)."""
        return self._lifetime_ms if self.authenticated else 0
