"""One connection's SASL state. The mechanisms' exchanges (plain.py,
scram.py) share one shape: ``step(token)`` answers a client token with the
server's, raises ``SaslFailure`` with the words the client is told, and
sets ``complete`` and ``user`` once the client is known."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class SaslFailure(Exception):
    """The authentication is refused; ``str(exc)`` is the client's message."""


class Exchange(Protocol):
    complete: bool
    user: str | None
    # How long the credential stays good (ms), 0 for no limit: a session
    # ends with it (KIP-368).
    lifetime_ms: int

    def step(self, token: bytes) -> bytes: ...


@dataclass
class SaslSession:
    """``mechanisms``: what this listener enables, each with a function
    that opens an exchange."""

    listener: str
    mechanisms: dict[str, Callable[[], Exchange]]
    mechanism: str | None = None
    principal: str | None = None
    authenticated: bool = False
    # Set with the answer that refuses the client: the connection is
    # closed once that answer is sent.
    failed: bool = False
    attempts: int = field(default=0)
    exchange: Exchange | None = None

    def choose(self, mechanism: str) -> bool:
        if self.authenticated or self.mechanism is not None or mechanism not in self.mechanisms:
            return False
        self.mechanism = mechanism
        self.exchange = self.mechanisms[mechanism]()
        return True

    def step(self, token: bytes) -> bytes:
        """The server's answer to ``token``; SaslFailure (and ``failed``
        set) when the client is refused. ``authenticated`` and
        ``principal`` are set once the exchange completes."""
        self.attempts += 1
        try:
            reply = self.exchange.step(token)
        except Exception:
            # SaslFailure, or a mechanism's own fault: either way the
            # client is refused and the exchange is over.
            self.failed = True
            self.exchange = None
            raise
        if self.exchange.complete:
            self.authenticated = True
            self.principal = f"User:{self.exchange.user}"
        return reply

    @property
    def lifetime_ms(self) -> int:
        return self.exchange.lifetime_ms if self.exchange is not None and self.authenticated else 0
