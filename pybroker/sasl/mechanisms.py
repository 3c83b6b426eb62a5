"""The mechanisms a SASL listener may enable, and how a connection opens
an exchange of each: PLAIN with the listener's JAAS users, SCRAM with the
credentials the cluster stores (they change while the broker runs, so
each exchange looks them up afresh), OAUTHBEARER with the listener's
token validator."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from .oauthbearer import MECHANISM as OAUTHBEARER
from .oauthbearer import OAuthBearerExchange
from .plain import PlainExchange
from .scram import HASHES, ScramCredential, ScramExchange
from .session import Exchange

SUPPORTED_MECHANISMS = ("PLAIN", *HASHES, OAUTHBEARER)

# (user, mechanism) -> the stored SCRAM credential, or None.
Credentials = Callable[[str, str], ScramCredential | None]


def _no_credentials(user: str, mechanism: str) -> None:
    return None


def exchanges(settings: dict[str, object], credentials: Credentials | None = None) -> dict[str, Callable[[], Exchange]]:
    """{mechanism: a function opening its exchange}, for SaslSession."""
    lookup = credentials or _no_credentials
    found: dict[str, Callable[[], Exchange]] = {}
    for mechanism, setting in settings.items():
        if mechanism == "PLAIN":
            found[mechanism] = partial(PlainExchange, setting)
        elif mechanism in HASHES:
            found[mechanism] = partial(ScramExchange, mechanism, partial(_for, lookup, mechanism))
        elif mechanism == OAUTHBEARER:
            found[mechanism] = partial(OAuthBearerExchange, setting)
    return found


def _for(lookup: Credentials, mechanism: str, user: str) -> ScramCredential | None:
    return lookup(user, mechanism)
