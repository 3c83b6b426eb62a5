"""SASL authentication on SASL_PLAINTEXT and SASL_SSL listeners (KIP-43,
KIP-152): the mechanisms' rules as data and pure functions (plain.py,
scram.py, oauthbearer.py with its token validators unsecured.py and
signed.py, and jwks.py), and the state of one connection's
authentication and re-authentication, KIP-368 (``SaslSession``). The
keys of signed tokens are read by pybroker.oauth_keys and handed in.
pybroker's own clients log in with client.py's ``SaslLogin``, which
says what to send and leaves the sending to them.

A connection to a SASL listener may send ApiVersions, SaslHandshake and
SaslAuthenticate until it is authenticated; anything else closes it, as
Kafka closes it. A failed authentication is answered
SASL_AUTHENTICATION_FAILED after ``connection.failed.authentication.delay.ms``
and the connection is closed.
"""

from .jaas import JaasError, parse_jaas
from .mechanisms import SUPPORTED_MECHANISMS, exchanges
from .plain import plain_users
from .session import SaslFailure, SaslSession

__all__ = ["SUPPORTED_MECHANISMS", "JaasError", "SaslFailure", "SaslSession", "exchanges", "parse_jaas", "plain_users"]
